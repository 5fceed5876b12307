"""Official XTREME-R metrics as plain functions of predictions (fractions in [0, 1]; no torch).

Each metric follows the official evaluation code of google-research/xtreme (evaluate.py and
third_party/evaluate_{squad,mlqa}.py, utils_mewslix.py, utils_lareqa.py), quirks included; a
comment names the quirk where the official number differs from the textbook metric.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence

import numpy as np


def accuracy(gold: Sequence, pred: Sequence) -> float:
    """Fraction of predictions equal to their gold label (labels of any comparable kind)."""
    if len(gold) != len(pred):
        raise ValueError(f"accuracy: {len(gold)} gold labels but {len(pred)} predictions")
    if not gold:
        raise ValueError("accuracy: no examples")
    return float(np.mean([g == p for g, p in zip(gold, pred, strict=True)]))


# --- tagging: seqeval F1 with no IOB scheme ---

# How a tag's chunk type is read. seqeval takes the first character as the B/I/E/S/O prefix whether
# or not the tag has one; the versions differ in the type. 0.0.12 (the official UD-POS numbers):
# the text after the last hyphen, so a plain POS tag is its own type. 1.2.2: the text after the
# first character and the first hyphen, '_' when empty, so CCONJ and SCONJ share the type 'CONJ',
# and X shares '_' with O (an X chunk before a sentence end is never closed, so it is lost).
_CHUNK_TYPE: dict[str, Callable[[str], str]] = {
    "0.0.12": lambda tag: tag.split("-")[-1],
    "1.2.2": lambda tag: tag[1:].split("-", 1)[-1] or "_",
}


def _chunk_ends(prev: str, cur: str, type_changed: bool) -> bool:
    """seqeval's end_of_chunk on prefixes (rules identical in 0.0.12 and 1.2.2)."""
    return prev in "ES" or (prev in "BI" and cur in "BSO") or (prev not in "O." and type_changed)


def _chunk_starts(prev: str, cur: str, type_changed: bool) -> bool:
    """seqeval's start_of_chunk on prefixes (rules identical in 0.0.12 and 1.2.2)."""
    return cur in "BS" or (cur in "EI" and prev in "ESO") or (cur not in "O." and type_changed)


def tag_chunks(
    sentences: Sequence[Sequence[str]], version: str = "0.0.12"
) -> set[tuple[str, int, int]]:
    """seqeval's get_entities: {(type, first, last)}, offsets into the sentences joined by 'O'.

    `version` picks how the type is read ("0.0.12" official, or "1.2.2"); see _CHUNK_TYPE.
    """
    chunk_type = _CHUNK_TYPE[version]
    flat = [tag for sentence in sentences for tag in (*sentence, "O")]
    chunks: set[tuple[str, int, int]] = set()
    prev_prefix, prev_type, begin = "O", "", 0
    for i, tag in enumerate([*flat, "O"]):
        if not tag:
            raise ValueError("tagging: empty tag")
        prefix, type_ = tag[0], chunk_type(tag)
        if _chunk_ends(prev_prefix, prefix, prev_type != type_):
            chunks.add((prev_type, begin, i - 1))
        if _chunk_starts(prev_prefix, prefix, prev_type != type_):
            begin = i
        prev_prefix, prev_type = prefix, type_
    return chunks


def _chunk_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], version: str) -> float:
    _check_lengths(gold, pred)
    gold_chunks, pred_chunks = tag_chunks(gold, version), tag_chunks(pred, version)
    correct = len(gold_chunks & pred_chunks)
    # no chunks on a side counts as precision (recall) 0, as seqeval does: all-O vs all-O is F1 0
    precision = correct / len(pred_chunks) if pred_chunks else 0.0
    recall = correct / len(gold_chunks) if gold_chunks else 0.0
    total = precision + recall
    return 2 * precision * recall / total if total > 0 else 0.0


def tagging_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """Official UD-POS and NER F1: micro chunk F1 as seqeval 0.0.12 computes it with no scheme.

    POS tags have no B-/I- prefix: seqeval reads the first character as one and merges neighbouring
    equal tags into one chunk. That quirk is the official number, so it is kept, not fixed. The
    official UD-POS numbers reproduce with 0.0.12/0.0.13 only (1.2.x: tagging_f1_seqeval122;
    0.0.15-0.0.17 crash on prefix-less tags). Sentences of unequal length are an error here,
    while 0.0.12 would silently compare shifted offsets.
    """
    return _chunk_f1(gold, pred, "0.0.12")


def tagging_f1_seqeval122(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """The same F1 as seqeval 1.2.2 computes it (default mode, no scheme); not the official number.

    Differs from tagging_f1 where CCONJ meets SCONJ, on X, and on tags with several hyphens.
    """
    return _chunk_f1(gold, pred, "1.2.2")


def token_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    _check_lengths(gold, pred)
    flat_gold = [t for sent in gold for t in sent]
    flat_pred = [t for sent in pred for t in sent]
    if not flat_gold:
        raise ValueError("tagging: no tokens")
    return float(np.mean([g == p for g, p in zip(flat_gold, flat_pred, strict=True)]))


def _check_lengths(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"tagging: {len(gold)} gold sentences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"tagging: sentence {i} has {len(g)} gold tags but {len(p)} predicted")


# --- extractive QA: SQuAD v1.1 and MLQA F1 / exact match ---

_SQUAD_PUNCTUATION = frozenset(string.punctuation)
_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")

# MLQA's articles per answer language; the pattern is replaced by a space. Arabic: the official
# pattern r"\sال^|ال" can only ever match its second branch, so ال goes wherever it occurs, even
# inside a word (which splits that word into two tokens).
_MLQA_ARTICLES: dict[str, re.Pattern[str] | None] = {
    "en": _SQUAD_ARTICLES,
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "ar": re.compile("ال"),
    "hi": None,
    "zh": None,
}
_MLQA_MIXED_SEGMENTATION = frozenset({"zh"})


def _is_mlqa_punctuation(ch: str) -> bool:
    # every Unicode punctuation (P*) character plus ASCII string.punctuation, which adds symbols
    # such as $ + < = > ^ ` | ~
    return ch in _SQUAD_PUNCTUATION or unicodedata.category(ch).startswith("P")


def squad_normalize(text: str) -> str:
    """SQuAD v1.1 answer normalization (lowercase, drop ASCII punctuation and a/an/the, squeeze)."""
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCTUATION)
    return " ".join(_SQUAD_ARTICLES.sub(" ", text).split())


def _mixed_segmentation(text: str) -> list[str]:
    """MLQA's zh tokens: each CJK character (U+4E00-U+9FA5) or punctuation mark alone, and the
    runs between them split on whitespace."""
    tokens: list[str] = []
    run = ""
    for ch in text:
        if "\u4e00" <= ch <= "\u9fa5" or _is_mlqa_punctuation(ch):
            tokens += run.split()
            tokens.append(ch)
            run = ""
        else:
            run += ch
    return tokens + run.split()


def mlqa_normalize(text: str, language: str) -> str:
    """MLQA answer normalization for an answer language (en es de ar hi vi zh); tokens joined by
    single spaces, so a zh answer comes back as its mixed-segmentation tokens."""
    if language not in _MLQA_ARTICLES:
        raise ValueError(
            f"mlqa: unknown answer language {language!r} (one of en es de ar hi vi zh)"
        )
    text = "".join(ch for ch in text.lower() if not _is_mlqa_punctuation(ch))
    articles = _MLQA_ARTICLES[language]
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = _mixed_segmentation(text) if language in _MLQA_MIXED_SEGMENTATION else text.split()
    return " ".join(t for t in tokens if t.strip())


def _token_f1(prediction: str, ground_truth: str) -> float:
    """Bag-of-tokens F1 of two normalized answers; 0 when nothing is shared, so empty vs empty
    is F1 0 even though it is an exact match (the official scripts' behaviour)."""
    pred_tokens, gold_tokens = prediction.split(), ground_truth.split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _qa_scores(
    gold: Sequence[Sequence[str]],
    pred: Sequence[str | None],
    normalize: Callable[[str], str],
) -> tuple[float, float]:
    """(mean F1, mean exact match) over questions, each the max over that question's answers."""
    if len(gold) != len(pred):
        raise ValueError(f"qa: {len(gold)} gold questions but {len(pred)} predictions")
    if not gold:
        raise ValueError("qa: no questions")
    f1 = em = 0.0
    for i, (answers, prediction) in enumerate(zip(gold, pred, strict=True)):
        if isinstance(answers, str) or not answers:
            raise ValueError(f"qa: question {i} needs a list of one or more gold answers")
        if prediction is None:  # unanswered: the official scripts count it, scoring 0
            continue
        predicted = normalize(prediction)
        normalized = [normalize(answer) for answer in answers]
        f1 += max(_token_f1(predicted, answer) for answer in normalized)
        em += max(float(predicted == answer) for answer in normalized)
    return f1 / len(gold), em / len(gold)


def squad_f1(gold: Sequence[Sequence[str]], pred: Sequence[str | None]) -> float:
    """SQuAD v1.1 token F1 (XQuAD, TyDiQA-GoldP, every language); gold: answers per question.

    A None prediction is an unanswered question and scores 0, as in the official script.
    """
    return _qa_scores(gold, pred, squad_normalize)[0]


def squad_exact_match(gold: Sequence[Sequence[str]], pred: Sequence[str | None]) -> float:
    """SQuAD v1.1 exact match after normalization; arguments as squad_f1."""
    return _qa_scores(gold, pred, squad_normalize)[1]


def squad_f1_em(gold: Sequence[Sequence[str]], pred: Sequence[str | None]) -> float:
    """(F1 + exact match) / 2, the XTREME-R task score of a QA language; arguments as squad_f1.

    Averaging this over languages equals (mean F1 + mean EM) / 2, evaluate.py's avg_metric.
    """
    f1, em = _qa_scores(gold, pred, squad_normalize)
    return (f1 + em) / 2


def mlqa_f1(gold: Sequence[Sequence[str]], pred: Sequence[str | None], language: str) -> float:
    """MLQA token F1 with the answer language's normalization; arguments as squad_f1."""
    return _qa_scores(gold, pred, lambda text: mlqa_normalize(text, language))[0]


def mlqa_exact_match(
    gold: Sequence[Sequence[str]], pred: Sequence[str | None], language: str
) -> float:
    """MLQA exact match with the answer language's normalization; arguments as squad_f1."""
    return _qa_scores(gold, pred, lambda text: mlqa_normalize(text, language))[1]


def mlqa_f1_em(gold: Sequence[Sequence[str]], pred: Sequence[str | None], language: str) -> float:
    """(F1 + exact match) / 2 for MLQA; arguments as squad_f1."""
    f1, em = _qa_scores(gold, pred, lambda text: mlqa_normalize(text, language))
    return (f1 + em) / 2


# --- retrieval ---


def average_precision_at_k(gold: Collection[Hashable], ranked: Sequence[Hashable], k: int) -> float:
    """AP@k of one query: precision at each rank <= k that holds a new gold item, summed, divided
    by min(number of gold items, k); 0 when no gold item is in the top k."""
    if not gold:
        raise ValueError("average precision: a query has no gold item")
    hits, total = 0, 0.0
    seen: set = set()
    for rank, item in enumerate(ranked[:k], start=1):
        if item in gold and item not in seen:  # a repeated prediction is not a second hit
            hits += 1
            total += hits / rank
        seen.add(item)
    return total / min(len(gold), k)


def map_at_20(gold: Sequence[Collection[Hashable]], ranked: Sequence[Sequence[Hashable]]) -> float:
    """LAReQA mAP@20: mean AP@20 over queries; gold is the set of correct candidates per query.

    The official score pools the questions of every language (no per-language average).
    """
    if len(gold) != len(ranked):
        raise ValueError(f"map@20: {len(gold)} gold queries but {len(ranked)} rankings")
    if not gold:
        raise ValueError("map@20: no queries")
    return float(
        np.mean([average_precision_at_k(g, r, 20) for g, r in zip(gold, ranked, strict=True)])
    )


def mewslix_mrr_at_20(gold: Sequence[Sequence[str]], ranked: Sequence[Sequence[str]]) -> float:
    """Mewsli-X "mAP@20" as the official code computes it: MRR@20 (1 / rank of the gold id).

    gold holds each mention's gold id list as the data provides it; only its first id counts,
    with surrounding whitespace stripped. Predicted ids are compared as given (not stripped).
    """
    if len(gold) != len(ranked):
        raise ValueError(f"mrr@20: {len(gold)} gold mentions but {len(ranked)} rankings")
    if not gold:
        raise ValueError("mrr@20: no mentions")
    reciprocal_ranks = []
    for ids, predicted in zip(gold, ranked, strict=True):
        target = ids[0].strip()
        rank = next((r for r, p in enumerate(predicted[:20], start=1) if p == target), None)
        reciprocal_ranks.append(1 / rank if rank else 0.0)
    return float(np.mean(reciprocal_ranks))


def tatoeba_accuracy(gold: Sequence[int], pred: Sequence[int]) -> float:
    """Tatoeba accuracy: fraction of queries whose nearest neighbour (top-1 index) is the gold
    index of the parallel sentence.

    Which side queries is the caller's choice: the official search (utils_retrieve.py,
    similarity_search) indexes the xx sentences and queries them with the English ones.
    """
    if len(gold) != len(pred):
        raise ValueError(f"tatoeba: {len(gold)} gold indices but {len(pred)} predictions")
    return accuracy([int(g) for g in gold], [int(p) for p in pred])


# --- averages ---


def language_average(scores: Mapping[str, float], languages: Sequence[str]) -> float:
    """A task's score: the plain mean over the given languages (the caller decides on English)."""
    if not languages:
        raise ValueError("language average: no languages")
    missing = [lang for lang in languages if lang not in scores]
    if missing:
        raise ValueError(f"language average: no score for {', '.join(missing)}")
    return float(np.mean([scores[lang] for lang in languages]))


def benchmark_averages(
    task_scores: Mapping[str, float], categories: Mapping[str, str]
) -> dict[str, float]:
    """Both benchmark averages of task scores (QA tasks already (F1 + EM) / 2).

    "xtreme_r_avg": the paper's headline Avg, the mean of the category means (classification,
    structured prediction, QA, retrieval: each target's `category` in trainers.tasks).
    "plain_mean": the plain mean over tasks, evaluate.py's "all_task". Both average the tasks
    given; every one needs a category.
    (evaluate.py's own groups differ: its retrieval group leaves out lareqa, and it lists xcopa
    as multi_choice; the paper's four categories are the registry's.)
    """
    if not task_scores:
        raise ValueError("benchmark averages: no task scores")
    missing = [task for task in task_scores if task not in categories]
    if missing:
        raise ValueError(f"benchmark averages: no category for {', '.join(missing)}")
    by_category: dict[str, list[float]] = {}
    for task, value in task_scores.items():
        by_category.setdefault(categories[task], []).append(value)
    return {
        "xtreme_r_avg": float(np.mean([np.mean(values) for values in by_category.values()])),
        "plain_mean": float(np.mean(list(task_scores.values()))),
    }


# --- metric families ---

# metric families (a task's `metric`, else its format's name); the first metric of a family is
# the task's official score
METRICS: dict[str, dict[str, Callable[..., float]]] = {
    "classification": {"accuracy": accuracy},
    "multiple_choice": {"accuracy": accuracy},
    "tagging": {"f1": tagging_f1, "token_accuracy": token_accuracy},
    "qa": {"f1_em": squad_f1_em, "f1": squad_f1, "exact_match": squad_exact_match},
    "qa_mlqa": {"f1_em": mlqa_f1_em, "f1": mlqa_f1, "exact_match": mlqa_exact_match},
    "retrieval_map": {"map@20": map_at_20},
    "retrieval_mrr": {"mrr@20": mewslix_mrr_at_20},
    "retrieval_top1": {"accuracy": tatoeba_accuracy},
}

# families whose metrics take the language of the examples as a third argument
LANGUAGE_DEPENDENT = frozenset({"qa_mlqa"})


def score(
    family: str, gold: Sequence, pred: Sequence, language: str | None = None
) -> dict[str, float]:
    """Every metric of a family of METRICS (a task's `metric_family`: its `metric`, else its
    format); `language` is required by LANGUAGE_DEPENDENT ones.

    MLQA's normalization exists for its seven languages only; the synthetic world's languages
    (English relexified, no articles of their own) are normalized as English.
    """
    if family not in METRICS:
        raise KeyError(f"no metric family {family!r}; known: {', '.join(sorted(METRICS))}")
    if family not in LANGUAGE_DEPENDENT:
        return {name: fn(gold, pred) for name, fn in METRICS[family].items()}
    if language is None:
        raise ValueError(f"{family}: the language of the examples is needed")
    if language not in _MLQA_ARTICLES and not _is_iso_code(language):
        language = "en"
    return {name: fn(gold, pred, language) for name, fn in METRICS[family].items()}


def _is_iso_code(language: str) -> bool:
    """Real languages come as two- or three-letter codes; the synthetic world's are longer."""
    return language.isalpha() and len(language) in (2, 3)


def primary_metric(family: str) -> str:
    """The family's official score: its first metric."""
    return next(iter(METRICS[family]))

"""Converters of real data: one small function per hub schema, registered by name (the
`converter:` of a trainers/sources.yaml entry), each turning one row into zero or more examples
of its task's format. trainers.sources finds the rows; these read them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.tasks import Example, Task

if TYPE_CHECKING:
    from trainers.sources import SplitSource

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What a converter may read besides the row: the task, the split, the dataset's ClassLabel
    names per column, and the retrieval pool it adds candidates to (id -> text)."""

    task: Task
    spec: SplitSource
    names: dict[str, list[str]]
    pool: dict[str, str]


Converter = Callable[[dict, Context], list[Example]]
CONVERTERS: dict[str, Converter] = {}


def converter(name: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        CONVERTERS[name] = fn
        return fn

    return register


def _label(ctx: Context, value: Any, column: str = "label") -> int | None:
    """A class index into the task's labels from a ClassLabel id (mapped by name when the
    dataset carries names), a bool, a label name or a digit string; None for an unlabelled row
    (-1, "", "-": GLUE test sets, SNLI pairs without gold label)."""
    labels = ctx.task.labels
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        value = int(value)
        if value < 0:
            return None
        names = ctx.names.get(column)
        if names and value < len(names) and names[value] in labels:
            return labels.index(names[value])
        if value >= len(labels):
            raise ValueError(f"label {value} outside the task's {len(labels)} labels")
        return value
    text = str(value).strip()
    if text in ("", "-"):
        return None
    lowered = [name.lower() for name in labels]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    if re.fullmatch(r"-?\d+", text):
        return _label(ctx, int(text), column)
    raise ValueError(f"unknown label {value!r}; the task's labels are {labels}")


def _first(row: dict, *columns: str) -> Any:
    for column in columns:
        if column in row:
            return row[column]
    raise KeyError(" or ".join(columns))


def _classification(text: str, pair: str | None, label: int | None) -> list[Example]:
    if label is None:
        return []
    example: Example = {"text": text, "label": label}
    if pair is not None:
        example["text_pair"] = pair
    return [example]


@converter("nli")
def nli(row: dict, ctx: Context) -> list[Example]:
    """facebook/xnli, nyu-mll/multi_nli, facebook/anli, stanfordnlp/snli: premise, hypothesis,
    label (ClassLabel entailment/neutral/contradiction; -1 unlabelled); google/xtreme XNLI:
    sentence1, sentence2, gold_label (a string)."""
    column = "label" if "label" in row else "gold_label"
    return _classification(
        _first(row, "premise", "sentence1"),
        _first(row, "hypothesis", "sentence2"),
        _label(ctx, row[column], column),
    )


@converter("glue_pair")
def glue_pair(row: dict, ctx: Context) -> list[Example]:
    """nyu-mll/glue qqp (question1, question2) and rte (sentence1, sentence2); label ClassLabel,
    -1 on the test split."""
    return _classification(
        _first(row, "sentence1", "question1"),
        _first(row, "sentence2", "question2"),
        _label(ctx, row["label"]),
    )


@converter("glue_single")
def glue_single(row: dict, ctx: Context) -> list[Example]:
    """nyu-mll/glue sst2: sentence, label (negative, positive)."""
    return _classification(row["sentence"], None, _label(ctx, row["label"]))


@converter("boolq")
def boolq(row: dict, ctx: Context) -> list[Example]:
    """google/boolq: question, passage, answer (bool); SuperGLUE's copy has label (0/1)."""
    value = row["answer"] if "answer" in row else row["label"]
    return _classification(row["question"], row["passage"], _label(ctx, value, "label"))


def _choice(
    context: str, question: str, choices: list[str], label: int | None, ctx: Context
) -> list[Example]:
    if label is None:
        return []
    if len(choices) != len(ctx.task.labels):
        raise ValueError(f"{len(choices)} choices, the task has {len(ctx.task.labels)}")
    if not 0 <= label < len(choices):
        raise ValueError(f"answer {label} outside {len(choices)} choices")
    return [{"context": context, "question": question, "choices": list(choices), "label": label}]


COPA_QUESTIONS = {"cause": "What was the cause?", "effect": "What happened as a result?"}


@converter("copa")
def copa(row: dict, ctx: Context) -> list[Example]:
    """SuperGLUE COPA and cambridgeltl/xcopa: premise, choice1, choice2, question ("cause" or
    "effect", English in every language), label 0/1."""
    question = COPA_QUESTIONS.get(str(row["question"]).strip().lower(), str(row["question"]))
    label = _label(ctx, row["label"])
    return _choice(row["premise"], question, [row["choice1"], row["choice2"]], label, ctx)


XCOPA_QUESTIONS_FILE = Path(__file__).with_name("xcopa_questions.json")


@functools.cache
def xcopa_questions() -> dict[str, list[str]]:
    """{"test": [500], "validation": [100]} "cause"/"effect" by item index (idx), taken from
    XCOPA's Estonian files (see the file's `provenance`)."""
    with XCOPA_QUESTIONS_FILE.open(encoding="utf-8") as f:
        table = json.load(f)
    return {split: table[split] for split in ("test", "validation")}


@converter("xcopa")
def xcopa(row: dict, ctx: Context) -> list[Example]:
    """cambridgeltl/xcopa <lang> test/validation, as `copa` but with the question type taken by
    item index from xcopa_questions.json: in the released files the field disagrees with the
    other languages for th (every item "effect"), tr, sw, id and it, while the labels agree."""
    split = "validation" if ctx.spec.split in ("validation", "val", "dev") else "test"
    table = xcopa_questions()[split]
    idx = int(row["idx"])
    if not 0 <= idx < len(table):
        raise ValueError(f"XCOPA idx {idx} outside the {len(table)} {split} items")
    return copa({**row, "question": table[idx]}, ctx)


@converter("siqa")
def siqa(row: dict, ctx: Context) -> list[Example]:
    """allenai/social_i_qa: context, question, answerA-C, label "1".."3" (a string)."""
    text = str(row["label"]).strip()
    label = int(text) - 1 if text else None
    choices = [row["answerA"], row["answerB"], row["answerC"]]
    return _choice(row["context"], row["question"], choices, label, ctx)


@converter("hellaswag")
def hellaswag(row: dict, ctx: Context) -> list[Example]:
    """Rowan/hellaswag: ctx_a, ctx_b (the start of the sentence each ending completes), endings
    (4), label "0".."3" (a string; "" on the test split)."""
    text = str(row["label"]).strip()
    label = int(text) if text else None
    return _choice(row["ctx_a"], row["ctx_b"], list(row["endings"]), label, ctx)


@converter("cosmosqa")
def cosmosqa(row: dict, ctx: Context) -> list[Example]:
    """allenai/cosmos_qa: context, question, answer0-3, label (int; -1 on the test split)."""
    choices = [row[f"answer{i}"] for i in range(4)]
    return _choice(row["context"], row["question"], choices, _label(ctx, row["label"]), ctx)


@converter("commonsenseqa")
def commonsenseqa(row: dict, ctx: Context) -> list[Example]:
    """tau/commonsense_qa: question, choices {label: [A..E], text: [...]}, answerKey (a letter;
    "" on the test split). The question is the context: there is no passage."""
    keys = [str(k) for k in row["choices"]["label"]]
    answer = str(row["answerKey"]).strip()
    label = keys.index(answer) if answer else None
    return _choice(row["question"], "", list(row["choices"]["text"]), label, ctx)


def _tags(ctx: Context, values: list, column: str) -> list[str]:
    """Tag names from ClassLabel ids (named by the dataset, else by the entry's tag_names,
    else by the task's labels) or from strings."""
    names = ctx.names.get(column) or ctx.spec.tag_names or ctx.task.labels
    return [names[int(v)] if isinstance(v, int | np.integer) else str(v) for v in values]


def _tagged(words: list[str], tags: list[str]) -> list[Example]:
    if len(words) != len(tags):
        raise ValueError(f"{len(words)} words but {len(tags)} tags")
    pairs = [(w, t) for w, t in zip(words, tags, strict=True) if t != "_"]  # UD multiword lines
    if not pairs:
        return []
    return [{"words": [w for w, _ in pairs], "tags": [t for _, t in pairs]}]


@converter("udpos")
def udpos(row: dict, ctx: Context) -> list[Example]:
    """google/xtreme udpos.<Language>: tokens, pos_tags (ClassLabel ids in UPOS order ADJ ...
    X, or strings); tags are mapped to the task's labels by name afterwards."""
    column = "pos_tags" if "pos_tags" in row else "upos"
    return _tagged(list(row["tokens"]), _tags(ctx, list(row[column]), column))


@converter("panx")
def panx(row: dict, ctx: Context) -> list[Example]:
    """google/xtreme PAN-X.<lang> and unimelb-nlp/wikiann: tokens, ner_tags (ClassLabel ids in
    the order O, B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC, or strings), langs."""
    return _tagged(list(row["tokens"]), _tags(ctx, list(row["ner_tags"]), "ner_tags"))


@converter("ccg")
def ccg(row: dict, ctx: Context) -> list[Example]:
    """Local CCGbank supertags: words (or tokens) and tags (or ccg_tags) as lists, or jiant's
    preprocessed lines with space-separated "text" and "tags" strings."""
    words = _first(row, "words", "tokens", "text")
    tags = _first(row, "tags", "ccg_tags")
    words = words.split() if isinstance(words, str) else list(words)
    tags = tags.split() if isinstance(tags, str) else list(tags)
    return _tagged(words, [str(t) for t in tags])


def _answers(row: dict) -> dict[str, list]:
    answers = row["answers"]
    return {
        "text": [str(t) for t in answers["text"]],
        "answer_start": [int(s) for s in answers["answer_start"]],
    }


REFIND_WINDOW = 64  # characters either side of a stored start searched for its answer


def refind(context: str, text: str, start: int) -> int:
    """The start of `text` in `context` nearest the stored `start` (within REFIND_WINDOW), or
    `start` unchanged where it is not found (the QA check then drops the answer).

    The hub's loading scripts for XQuAD, MLQA and TyDiQA (huggingface/datasets
    datasets/xtreme/xtreme.py, `_generate_examples`: `paragraph["context"].strip()`,
    `answer["text"].strip()`) strip both strings but keep `answer_start`, so every answer of a
    context with leading whitespace, or with its own leading whitespace, sits a few characters
    off. The original files have every answer at its offset (benchmarks/real_data_counts.py)."""
    if not text or context[start : start + len(text)] == text:
        return start
    lo = max(0, start - REFIND_WINDOW)
    hits, at = [], context.find(text, lo)
    while at != -1 and at <= start + REFIND_WINDOW:
        hits.append(at)
        at = context.find(text, at + 1)
    return min(hits, key=lambda h: (abs(h - start), h)) if hits else start


def _located_answers(row: dict) -> dict[str, list]:
    answers = _answers(row)
    context = row["context"]
    answers["answer_start"] = [
        refind(context, text, start)
        for text, start in zip(answers["text"], answers["answer_start"], strict=True)
    ]
    return answers


@converter("squad")
def squad(row: dict, ctx: Context) -> list[Example]:
    """rajpurkar/squad, rajpurkar/squad_v2 (empty answers: unanswerable), google/xtreme XQuAD,
    MLQA and tydiqa, google/xquad: id, context, question, answers {text, answer_start}; each
    answer re-found near its stored start (`refind`: the hub's copies strip the texts)."""
    example = {"id": str(row["id"]), "context": row["context"], "question": row["question"]}
    return [{**example, "answers": _located_answers(row)}]


# a break after . ! ? (and the Devanagari danda U+0964, double danda U+0965) followed by
# whitespace, after the CJK marks U+3002 U+FF01 U+FF1F, and at whitespace between two Thai
# characters (Thai writes no sentence marks: a space ends a sentence, but also a clause or a
# phrase, so a Thai break needs THAI_MIN_CHARS of sentence before it)
_SENTENCE_END = re.compile(
    r"(?<=[.!?\u0964\u0965])\s+|(?<=[\u3002\uff01\uff1f])"
    r"|(?P<thai>(?<=[\u0e00-\u0e7f])\s+(?=[\u0e00-\u0e7f]))"
)
THAI_MIN_CHARS = 150  # of 40-300, the most gold agreement with XQuAD-R Thai breaks (still 8%)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, for contexts that ship no sentence breaks (XQuAD-R on the
    hub, SQuAD). Where the data set has breaks (LAReQA's xquad-r/<l>.json `sentence_breaks`)
    they are used instead. Known errors against those breaks (benchmarks/real_data_counts.py
    counts them): abbreviations and decimals followed by a space split a sentence ("U.S.
    Army"); a Thai sentence is cut at the first space past THAI_MIN_CHARS, which often falls
    inside the data set's sentence or past its end."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if match["thai"] and match.start() - start < THAI_MIN_CHARS:
            continue
        if text[start : match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def _sentence_of(spans: list[tuple[int, int]], offset: int) -> int:
    """The sentence holding a character offset (one between sentences goes to the next)."""
    return next((k for k, (_, end) in enumerate(spans) if offset < end), len(spans) - 1)


@converter("squad_sentences")
def squad_sentences(row: dict, ctx: Context) -> list[Example]:
    """LAReQA from a SQuAD-schema row (rajpurkar/squad, google-research-datasets/xquad_r, or
    the lareqa files with `sentence_breaks`, which are then the sentences): the question
    retrieves the sentence of the context that holds the answer. Training gives
    {query, positive}; dev and test give {query, gold} and add every sentence of the context to
    the split's pool, with ids "<lang>:<context hash>:<sentence index>"."""
    context = row["context"]
    breaks = row.get("sentence_breaks")
    spans = [(int(b[0]), int(b[1])) for b in breaks] if breaks else sentence_spans(context)
    starts = _located_answers(row)["answer_start"]
    if not spans or not starts:
        return []
    key = f"{ctx.spec.lang}:{hashlib.sha1(context.encode()).hexdigest()[:12]}"
    ids = [f"{key}:{k}" for k in range(len(spans))]
    hits = sorted({_sentence_of(spans, s) for s in starts})
    if ctx.spec.role == "train":
        start, end = spans[hits[0]]
        return [{"query": row["question"], "positive": context[start:end].strip()}]
    for sentence_id, (start, end) in zip(ids, spans, strict=True):
        ctx.pool.setdefault(sentence_id, context[start:end].strip())
    return [{"query": row["question"], "gold": [ids[k] for k in hits], "_key": str(row["id"])}]


def _span(value: Any) -> tuple[int, int]:
    if isinstance(value, dict):
        return int(value["start"]), int(value["end"])
    start, end = value
    return int(start), int(end)


def _mention_query(context: dict, mention: dict) -> str:
    """The sentence holding the mention, the mention in [brackets]; the bare mention text when
    the article text is missing (the released *_no_text files)."""
    span = mention["mention_span"]
    surface = str(span["text"])
    text = context.get("text") or ""
    if not text:
        return surface
    start, end = _span(span)
    left, right = 0, len(text)
    for s, e in (_span(v) for v in context.get("sentence_spans") or []):
        if s <= start < e:
            left, right = s, max(e, end)
            break
    return f"{text[left:start]}[{text[start:end]}]{text[end:right]}".strip()


@converter("mewslix_pair")
def mewslix_pair(row: dict, ctx: Context) -> list[Example]:
    """Mewsli-X wikipedia_pairs-{train,dev}.jsonl: contextual_mention {context {text,
    sentence_spans, ...}, mention {entity_id, mention_span {text, start, end}}}, entity
    {entity_id, description, ...}. Dev adds each gold entity to the dev pool."""
    mention = row["contextual_mention"]
    entity = row["entity"]
    query = _mention_query(mention["context"], mention["mention"])
    if ctx.spec.role == "train":
        return [{"query": query, "positive": entity["description"]}]
    ctx.pool.setdefault(str(entity["entity_id"]), entity["description"])
    return [{"query": query, "gold": [str(mention["mention"]["entity_id"]).strip()]}]


@converter("mewslix_mention")
def mewslix_mention(row: dict, ctx: Context) -> list[Example]:
    """Mewsli-X wikinews_mentions-{dev,test}.jsonl: one article (context {language, text,
    sentence_spans, ...}) and its mentions [{example_id, entity_id, mention_span}]; one query
    per mention."""
    return [
        {"query": _mention_query(row["context"], m), "gold": [str(m["entity_id"]).strip()]}
        for m in row["mentions"]
    ]


@converter("mewslix_entity")
def mewslix_entity(row: dict, ctx: Context) -> list[Example]:
    """Mewsli-X candidate_set_entities.jsonl: entity_id, description, ...: the test pool."""
    ctx.pool.setdefault(str(row["entity_id"]), row["description"])
    return []


@converter("tatoeba")
def tatoeba(row: dict, ctx: Context) -> list[Example]:
    """google/xtreme tatoeba.<code> and LASER's files (`tatoeba_pairs`): source_sentence (the
    language's), target_sentence (English), source_lang, target_lang; surrounding whitespace
    and the line's newline stripped."""
    # the hub's script stores raw lines, newline included (xtreme.py: `source_sentences.append(
    # row)` for row in the file); the official preprocessing strips them
    return [{"source": row["source_sentence"].strip(), "target": row["target_sentence"].strip()}]

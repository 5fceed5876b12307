"""Counts before and after the real-data fixes of issue 16, on full copies of the public files.

    python benchmarks/real_data_counts.py CACHE [--tokenizer NAME_OR_FOLDER]

CACHE (kept outside the repository) holds what tests/fixtures/real/PROVENANCE.md names, whole:
xcopa/data/<l>/{val,test}.<l>.jsonl, xquad/xquad.<l>.json, lareqa/<l>.json,
ud-2.5/UD_<Treebank>/*.conllu, and panx/af_test_truth.csv (WikiANN af test, Rahimi split, from
afshinrahimi/mmner bea_code/data_wiki/af_test/truth.csv at 3d99db3). Sections whose files are
missing are skipped. Truncation needs a subword tokenizer: `--tokenizer` takes a hub id or a
folder (FacebookAI/xlm-roberta-base where it is cached); without one a SentencePiece unigram
model trained here on the cached UD and XQuAD text stands in (a proxy: XLM-R's own vocabulary
would give other counts).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections import Counter
from pathlib import Path

from trainers import ud
from trainers.converters import _sentence_of, refind, sentence_spans
from trainers.heads.tagging import split_long_sentences
from trainers.sources import LANGUAGE_NAMES

XCOPA_LANGS = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
XQUAD_LANGS = ("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro")
LAREQA_LANGS = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
OLD_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")  # the splitter before issue 16


def echo(text: str = "") -> None:
    import sys

    sys.stdout.write(text + "\n")


def ud_counts(cache: Path) -> None:
    root = cache / "ud-2.5"
    if not root.is_dir():
        return
    echo("## UD-POS sentences: hub udpos.<Language> vs official selection (UD 2.5 files here)")
    for lang in ("el", "zh", "en", "es", "fr", "ru", "de"):
        language = LANGUAGE_NAMES[lang]
        for split in ("dev", "test"):
            hub = ud.hub_sentences([root], language, split)
            official = ud.official_sentences([root], lang, split)
            if not hub and not official:
                continue
            per = ", ".join(f"{k} {v}" for k, v in sorted(Counter(s.treebank for s in hub).items()))
            if not official:  # only the mixed-in treebanks were fetched
                echo(f"{lang} {split}: the hub adds {per}; the language's own treebanks not here")
                continue
            echo(
                f"{lang} {split}: hub {len(hub)} ({per})"
                f"; official {len(official)}; other languages' share of the hub set "
                f"{1 - len(official) / len(hub):.1%}"
            )
    echo()


def _squad(path: Path) -> list[tuple[str, list[tuple[str, int]]]]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [
        (p["context"], [(a["text"], a["answer_start"]) for q in p["qas"] for a in q["answers"]])
        for article in data
        for p in article["paragraphs"]
    ]


def xquad_counts(cache: Path) -> None:
    if not (cache / "xquad").is_dir():
        return
    echo("## XQuAD answers at their offset: raw file / hub strip / hub strip + refind (of all)")
    for lang in XQUAD_LANGS:
        path = cache / "xquad" / f"xquad.{lang}.json"
        if not path.exists():
            continue
        raw = hub = fixed = total = 0
        for context, answers in _squad(path):
            stripped = context.strip()
            for text, start in answers:
                total += 1
                raw += context[start : start + len(text)] == text
                t = text.strip()
                hub += stripped[start : start + len(t)] == t
                at = refind(stripped, t, start)
                fixed += stripped[at : at + len(t)] == t
        echo(f"{lang}: {raw} / {hub} / {fixed} of {total}; lost under the hub: {total - hub}")
    echo()


def _old_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for match in OLD_SENTENCE_END.finditer(text):
        if text[start : match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def lareqa_counts(cache: Path) -> None:
    if not (cache / "lareqa").is_dir():
        return
    echo("## LAReQA pool sentences and questions whose gold sentence equals the data set's")
    echo("lang: breaks pool | old splitter pool, gold agreement | new splitter pool, agreement")
    for lang in LAREQA_LANGS:
        path = cache / "lareqa" / f"{lang}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        n = {"breaks": 0, "old": 0, "new": 0}
        agree = {"old": 0, "new": 0}
        questions = 0
        for article in data:
            for p in article["paragraphs"]:
                context = p["context"]
                breaks = [tuple(b) for b in p["sentence_breaks"]]
                spans = {"old": _old_spans(context), "new": sentence_spans(context)}
                n["breaks"] += len(breaks)
                for k, v in spans.items():
                    n[k] += len(v)
                for qa in p["qas"]:
                    questions += 1
                    start = qa["answers"][0]["answer_start"]
                    s, e = breaks[_sentence_of(breaks, start)]
                    gold = context[s:e].strip()
                    for k, v in spans.items():
                        s2, e2 = v[_sentence_of(v, start)]
                        agree[k] += context[s2:e2].strip() == gold
        echo(
            f"{lang}: {n['breaks']} | {n['old']}, {agree['old'] / questions:.1%} | "
            f"{n['new']}, {agree['new'] / questions:.1%} (of {questions} questions)"
        )
    echo("with the files' breaks (data.sources.lareqa: {path: squad_json}) the pool is theirs")
    echo()


def xcopa_counts(cache: Path) -> None:
    base = cache / "xcopa" / "data"
    if not base.is_dir():
        return
    echo("## XCOPA question fields corrected (differing from et by idx), test + validation")

    def field(lang: str, split: str) -> dict[int, str]:
        lines = (base / lang / f"{split}.{lang}.jsonl").read_text(encoding="utf-8").splitlines()
        return {json.loads(x)["idx"]: json.loads(x)["question"] for x in lines}

    for lang in XCOPA_LANGS:
        counts = []
        for split in ("test", "val"):
            ref, mine = field("et", split), field(lang, split)
            counts.append(sum(ref[i] != mine[i] for i in ref))
        echo(f"{lang}: {counts[0]} of 500 test, {counts[1]} of 100 validation")
    echo()


def _proxy_tokenizer(cache: Path) -> object:
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import PreTrainedTokenizerFast

    texts = []
    for path in sorted((cache / "ud-2.5").rglob("*.conllu")):
        texts += [line[9:] for line in path.read_text(encoding="utf-8").splitlines()
                  if line.startswith("# text = ")]  # fmt: skip
    for path in sorted((cache / "xquad").glob("*.json")):
        texts += [c for c, _ in _squad(path)]
    import tempfile

    from tokenizers.processors import TemplateProcessing

    model = SentencePieceUnigramTokenizer()
    model.train_from_iterator(texts, vocab_size=32000, special_tokens=["<s>", "</s>", "<unk>"],
                              unk_token="<unk>", show_progress=False)  # fmt: skip
    model.post_processor = TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 1)]
    )
    path = Path(tempfile.mkdtemp()) / "tokenizer.json"
    model.save(str(path))
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    return PreTrainedTokenizerFast(
        tokenizer_file=str(path), cls_token="<s>", sep_token="</s>", **specials
    )


def _unscored(tokenizer: object, sentences: list[list[str]], max_length: int) -> tuple[int, int]:
    """(words without a labelled subword under truncation, the same after splitting)."""
    before = after = 0
    for start in range(0, len(sentences), 256):
        batch = [{"words": w, "tags": [0] * len(w)} for w in sentences[start : start + 256]]
        enc = tokenizer([b["words"] for b in batch], is_split_into_words=True,
                        truncation=True, max_length=max_length)  # fmt: skip
        for i, b in enumerate(batch):
            before += len(b["words"]) - len({w for w in enc.word_ids(i) if w is not None})
        pieces = split_long_sentences(tokenizer, batch, max_length)
        enc = tokenizer([p["words"] for p in pieces], is_split_into_words=True,
                        truncation=True, max_length=max_length)  # fmt: skip
        for i, p in enumerate(pieces):
            after += len(p["words"]) - len({w for w in enc.word_ids(i) if w is not None})
    return before, after


def truncation_counts(cache: Path, tokenizer_name: str | None, max_length: int) -> None:
    if tokenizer_name:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
        label = tokenizer_name
    else:
        tokenizer = _proxy_tokenizer(cache)
        label = "proxy SentencePiece unigram, 32k, trained on the cached UD + XQuAD text"
    echo(f"## Words left unscored at max_length {max_length} ({label}): truncated | split")
    root = cache / "ud-2.5"
    for lang in ("en", "el", "zh", "es"):
        sentences = [list(s.words) for s in ud.official_sentences([root], lang, "test")]
        if sentences:
            before, after = _unscored(tokenizer, sentences, max_length)
            words = sum(map(len, sentences))
            long = sum(len(tokenizer(s, is_split_into_words=True)["input_ids"]) > max_length
                       for s in sentences)  # fmt: skip
            echo(f"UD-POS {lang} test: {before} | {after} of {words} words "
                 f"({long} of {len(sentences)} sentences longer)")  # fmt: skip
    panx = cache / "panx" / "af_test_truth.csv"
    if panx.exists():
        sentences: dict[int, list[str]] = {}
        with panx.open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                sentences.setdefault(int(row["sent_idx"]), []).append(row["word"][3:])
        words_of = list(sentences.values())
        before, after = _unscored(tokenizer, words_of, max_length)
        echo(f"PAN-X af test: {before} | {after} of {sum(map(len, words_of))} words "
             f"({len(words_of)} sentences)")  # fmt: skip
    echo()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    ud_counts(args.cache)
    xquad_counts(args.cache)
    lareqa_counts(args.cache)
    xcopa_counts(args.cache)
    truncation_counts(args.cache, args.tokenizer, args.max_length)


if __name__ == "__main__":
    main()

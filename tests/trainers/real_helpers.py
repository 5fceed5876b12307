"""Hub-shaped copies of the real excerpts in tests/fixtures/real, made by applying what the
hub's loading scripts do to the original files (huggingface/datasets, last versions before the
script removal: datasets/xtreme/xtreme.py, datasets/xquad_r/xquad_r.py), and the
`data.sources` overrides that load either form through the real loaders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
UD_ROOT = REAL / "ud" / "ud-treebanks-v2.5"
XCOPA_LANGS = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
XQUAD_LANGS = ("en", "zh", "ar", "hi", "th")
LAREQA_LANGS = ("en", "hi", "th")
TATOEBA = {"az": "aze", "lt": "lit", "pl": "pol", "uk": "ukr", "ro": "ron"}


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return str(path)


def hub_squad_rows(path: Path) -> list[dict]:
    """xtreme.py XQuAD / MLQA / tydiqa and xquad_r.py `_generate_examples`: context, question
    and every answer text `.strip()`ped, `answer_start` kept as in the file; no
    sentence_breaks."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"].strip()
            for qa in paragraph["qas"]:
                rows.append(
                    {
                        "id": qa["id"],
                        "context": context,
                        "question": qa["question"].strip(),
                        "answers": {
                            "answer_start": [a["answer_start"] for a in qa["answers"]],
                            "text": [a["text"].strip() for a in qa["answers"]],
                        },
                    }
                )
    return rows


def hub_tatoeba_rows(code: str) -> list[dict]:
    """xtreme.py tatoeba: `for row in f1: source_sentences.append(row)`, raw lines, newline
    kept."""
    base = REAL / "tatoeba" / f"tatoeba.{code}-eng"
    with Path(f"{base}.{code}").open(encoding="utf-8") as f1:
        source = list(f1)
    with Path(f"{base}.eng").open(encoding="utf-8") as f2:
        target = list(f2)
    return [
        {"source_sentence": s, "target_sentence": t, "source_lang": code, "target_lang": "eng"}
        for s, t in zip(source, target, strict=True)
    ]


def hub_udpos_rows(language: str, split: str) -> list[dict]:
    """xtreme.py udpos.<Language>: every .conllu whose path holds `_<Language>` and the split
    name (NYUAD excluded), read with csv (tab, QUOTE_NONE); a line of 10+ fields whose form and
    UPOS are not `_` is a word; an empty line ends a sentence."""
    rows = []
    for path in sorted(UD_ROOT.rglob("*.conllu")):
        name = str(path.relative_to(UD_ROOT.parent))
        if f"_{language}" not in name or split not in path.name or "NYUAD" in name:
            continue
        with path.open(encoding="utf-8") as f:
            tokens: list[str] = []
            tags: list[str] = []
            for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                if len(row) >= 10 and row[1] != "_" and row[3] != "_":
                    tokens.append(row[1])
                    tags.append(row[3])
                if len(row) == 0 and tokens:
                    rows.append({"tokens": tokens, "pos_tags": tags})
                    tokens, tags = [], []
    return rows


def hub_overrides(tmp: Path) -> dict:
    """data.sources serving hub-shaped JSON-lines copies of the excerpts."""
    for lang in XQUAD_LANGS:
        rows = hub_squad_rows(REAL / "xquad" / f"xquad.{lang}.json")
        _jsonl(tmp / "xquad" / f"{lang}.jsonl", rows)
    for lang in LAREQA_LANGS:
        _jsonl(tmp / "lareqa" / f"{lang}.jsonl", hub_squad_rows(REAL / "xquad_r" / f"{lang}.json"))
    for lang in XCOPA_LANGS:  # the hub's parquet holds the jsonl rows as they are
        for split in ("test", "val"):
            lines = (REAL / "xcopa" / lang / f"{split}.{lang}.jsonl").read_text("utf-8")
            rows = [json.loads(line) for line in lines.splitlines()]
            _jsonl(tmp / "xcopa" / f"{split}.{lang}.jsonl", rows)
    for code in TATOEBA.values():
        _jsonl(tmp / "tatoeba" / f"{code}.jsonl", hub_tatoeba_rows(code))
    for language in ("English", "Chinese", "Spanish"):
        for split in ("dev", "test"):
            _jsonl(tmp / "udpos" / f"{split}.{language}.jsonl", hub_udpos_rows(language, split))
    cache = str(tmp / "hf-cache")
    english = str(tmp / "xquad" / "en.jsonl")
    return {
        "xquad": {
            "path": "json",
            "data_files": {"train": english, "dev": english, "test": f"{tmp}/xquad/{{lang}}.jsonl"},
            "cache_dir": cache,
        },
        "lareqa": {
            "path": "json",
            "data_files": {
                "train": english, "dev": english, "test": f"{tmp}/lareqa/{{lang}}.jsonl",
            },
            "cache_dir": cache,
        },
        "xcopa": {  # English COPA stands in: XCOPA's Estonian validation items
            "path": "json",
            "data_files": {
                "train": f"{tmp}/xcopa/val.et.jsonl",
                "dev": f"{tmp}/xcopa/val.et.jsonl",
                "test": f"{tmp}/xcopa/test.{{lang}}.jsonl",
            },
            "cache_dir": cache,
        },
        "tatoeba": {
            "path": "json",
            "data_files": {"test": f"{tmp}/tatoeba/{{code}}.jsonl"},
            "codes": TATOEBA,
            "cache_dir": cache,
        },
        "udpos": {
            "path": "json",
            "data_files": {
                "train": f"{tmp}/udpos/dev.English.jsonl",
                "dev": f"{tmp}/udpos/dev.English.jsonl",
                "test": f"{tmp}/udpos/test.{{language}}.jsonl",
            },
            "cache_dir": cache,
        },
    }  # fmt: skip


def original_overrides(tmp: Path) -> dict:
    """data.sources reading the excerpts as the data sets ship them (trainers/real_files.py)."""
    english = str(REAL / "xquad" / "xquad.en.json")
    copa = str(REAL / "xcopa" / "et" / "val.et.jsonl")
    return {
        "xquad": {
            "path": "squad_json",
            "data_files": {
                "train": english, "dev": english, "test": str(REAL / "xquad/xquad.{lang}.json"),
            },
        },
        "lareqa": {
            "path": "squad_json",
            "data_files": {
                "train": english, "dev": english, "test": str(REAL / "xquad_r/{lang}.json"),
            },
        },
        "xcopa": {
            "path": "json",
            "data_files": {
                "train": copa, "dev": copa, "test": str(REAL / "xcopa/{lang}/test.{lang}.jsonl"),
            },
            "cache_dir": str(tmp / "hf-cache"),
        },
        "tatoeba": {
            "path": "tatoeba_pairs",
            "data_files": {"test": str(REAL / "tatoeba/tatoeba.{code}-eng.{code}")},
            "codes": TATOEBA,
        },
        "udpos": {
            "path": "conllu",
            "data_files": str(REAL / "ud" / "ud-treebanks-v{ud_version}"),
            "train": {"split": "dev"},  # the excerpt has no English training file
        },
    }  # fmt: skip

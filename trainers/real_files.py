"""The data sets' original files, read into rows of the hub schemas (a `datasets.Dataset`), for
sources whose `path` names one of LOCAL_BUILDERS instead of a hub id or a packaged builder:

- `conllu`: a UD release (or treebank folders / files) -> udpos rows {tokens, pos_tags,
  treebank}, with the official XTREME treebank selection and token handling (trainers.ud).
- `squad_json`: SQuAD-format JSON (XQuAD xquad.<l>.json, MLQA, TyDiQA-GoldP, LAReQA
  xquad-r/<l>.json) -> one row per question {id, title, context, question, answers
  {text, answer_start}}, untouched (no strip), plus `sentence_breaks` where paragraphs carry
  them (LAReQA).
- `tatoeba_pairs`: LASER's tatoeba.<c>-eng.<c> (data_files) and its tatoeba.<c>-eng.eng beside
  it -> {source_sentence, target_sentence, source_lang, target_lang}, one row per line pair.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainers import ud


def _paths(data_files: Any) -> list[str]:
    if data_files is None:
        raise ValueError("data_files: required for local files")
    if isinstance(data_files, str | Path):
        return [str(data_files)]
    return [str(p) for p in data_files]


def _dataset(rows: list[dict]) -> Any:
    import datasets

    return datasets.Dataset.from_list(rows)


def conllu_rows(data_files: Any, lang: str, split: str) -> list[dict]:
    sentences = ud.official_sentences(_paths(data_files), lang, split)
    if not sentences:
        raise FileNotFoundError(
            f"no {lang}_*-ud-{ud.SPLITS[split]}.conllu under {', '.join(_paths(data_files))}"
        )
    return [
        {"tokens": list(s.words), "pos_tags": list(s.tags), "treebank": s.treebank}
        for s in sentences
    ]


def squad_rows(data_files: Any, lang: str, split: str) -> list[dict]:
    rows = []
    for path in _paths(data_files):
        with Path(path).open(encoding="utf-8") as f:
            articles = json.load(f)["data"]
        for article in articles:
            for paragraph in article["paragraphs"]:
                breaks = paragraph.get("sentence_breaks")
                for qa in paragraph["qas"]:
                    row = {
                        "id": str(qa["id"]),
                        "title": article.get("title", ""),
                        "context": paragraph["context"],
                        "question": qa["question"],
                        "answers": {
                            "text": [a["text"] for a in qa["answers"]],
                            "answer_start": [int(a["answer_start"]) for a in qa["answers"]],
                        },
                    }
                    if breaks is not None:
                        row["sentence_breaks"] = [[int(s), int(e)] for s, e in breaks]
                    rows.append(row)
    return rows


def tatoeba_rows(data_files: Any, lang: str, split: str) -> list[dict]:
    rows = []
    for path in map(Path, _paths(data_files)):
        code = path.suffix.lstrip(".")
        english = path.with_suffix(".eng")
        source = path.read_text(encoding="utf-8").splitlines()
        target = english.read_text(encoding="utf-8").splitlines()
        if len(source) != len(target):
            raise ValueError(f"{path}: {len(source)} lines but {english}: {len(target)}")
        rows += [
            {"source_sentence": s, "target_sentence": t, "source_lang": code, "target_lang": "eng"}
            for s, t in zip(source, target, strict=True)
        ]
    return rows


LOCAL_BUILDERS: dict[str, Callable[[Any, str, str], list[dict]]] = {
    "conllu": conllu_rows,
    "squad_json": squad_rows,
    "tatoeba_pairs": tatoeba_rows,
}


@functools.lru_cache(maxsize=64)
def _load_cached(builder: str, data_files_json: str, lang: str, split: str) -> Any:
    return _dataset(LOCAL_BUILDERS[builder](json.loads(data_files_json), lang, split))


def load_local(builder: str, data_files: Any, lang: str, split: str) -> Any:
    """Rows of one split as a `datasets.Dataset` (cached per arguments)."""
    return _load_cached(builder, json.dumps(data_files, sort_keys=True), lang, split)

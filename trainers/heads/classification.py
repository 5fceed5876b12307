"""Sentence and sentence-pair classification (XNLI, PAWS-X style; MNLI, QQP, SST-2 ...)."""

from __future__ import annotations

from typing import Any

from trainers.heads.base import SingleLabel, empty_text, label_maps, label_problem


class Classification(SingleLabel):
    """Examples: {"text", "text_pair"?, "label"}; the gold and predicted shape is label ids."""

    name = "classification"
    head_class = "XLMRobertaForSequenceClassification"

    def head_kwargs(self, task: Any) -> dict[str, Any]:
        return label_maps(task)

    def check(self, task: Any, example: dict) -> str | None:
        problem = empty_text(example, ("text", "text_pair"))
        return problem or label_problem(task, example.get("label"))

    def train_features(self, task: Any, tokenizer: Any, examples: list, max_length: int) -> list:
        pairs = [e.get("text_pair") for e in examples]
        enc = tokenizer(
            [e["text"] for e in examples],
            pairs if any(p is not None for p in pairs) else None,
            truncation=True,
            max_length=max_length,
        )
        return [
            {"input_ids": ids, "labels": e["label"]}
            for ids, e in zip(enc["input_ids"], examples, strict=True)
        ]

    def blank(self, example: dict) -> dict:
        return {**example, "text": ""} | ({"text_pair": ""} if "text_pair" in example else {})

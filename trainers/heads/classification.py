"""Sentence and sentence-pair classification (XNLI, PAWS-X style; MNLI, QQP, SST-2 ...)."""

from __future__ import annotations

from typing import Any

import torch

from trainers.heads.base import (
    EvalSet,
    Format,
    by_length,
    empty_text,
    label_problem,
    labelled_logits,
    log2_prob_of,
    most_frequent,
)


class Classification(Format):
    """Examples: {"text", "text_pair"?, "label"}; the gold and predicted shape is label ids."""

    name = "classification"
    head_class = "XLMRobertaForSequenceClassification"

    def head_kwargs(self, task: Any) -> dict[str, Any]:
        return {
            "num_labels": len(task.labels),
            "id2label": dict(enumerate(task.labels)),
            "label2id": {n: i for i, n in enumerate(task.labels)},
        }

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

    def eval_set(
        self, task: Any, tokenizer: Any, examples: list, max_length: int, pool: list | None = None
    ) -> EvalSet:
        features = self.train_features(task, tokenizer, examples, max_length)
        return EvalSet(features, examples, self.collator(task, tokenizer))

    @torch.no_grad()
    def predict(
        self, task: Any, model: Any, data: EvalSet, batch_size: int, device: Any
    ) -> tuple[list, list]:
        gold, pred = [], []
        for idx in by_length(data.features, batch_size):
            batch = data.collate([data.features[i] for i in idx])
            labels = batch.pop("labels")
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            gold += labels.tolist()
            pred += logits.argmax(-1).cpu().tolist()
        return gold, pred

    def blank(self, example: dict) -> dict:
        return {**example, "text": ""} | ({"text_pair": ""} if "text_pair" in example else {})

    @torch.no_grad()
    def gold_log2_probs(
        self, task: Any, model: Any, data: EvalSet, batch_size: int, device: Any
    ) -> list[float]:
        lengths = [len(f["input_ids"]) for f in data.features]
        out: list[float] = []
        for logits, labels in labelled_logits(model, data, batch_size, device, lengths):
            out += log2_prob_of(logits, labels)
        return out

    def majority(self, task: Any, train: list, data: EvalSet) -> tuple[list, list]:
        top = most_frequent([e["label"] for e in train])
        gold = [e["label"] for e in data.examples]
        return gold, [top] * len(gold)

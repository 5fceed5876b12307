"""Token tagging with first-subword labels (UD-POS, WikiANN NER; CCG supertagging)."""

from __future__ import annotations

from typing import Any

import torch

from trainers.heads.base import EvalSet, Labelled, label_maps, label_problem, most_frequent


class Tagging(Labelled):
    """Examples: {"words", "tags"} (tag ids); gold and predicted are tag-name sequences, one per
    sentence, over the words whose first subword survived truncation."""

    name = "tagging"
    head_class = "XLMRobertaForTokenClassification"

    def head_kwargs(self, task: Any) -> dict[str, Any]:
        return label_maps(task)

    def check(self, task: Any, example: dict) -> str | None:
        words, tags = example.get("words"), example.get("tags")
        if not words:
            return "empty sentence"
        if any(not isinstance(w, str) or not w.strip() for w in words):
            return "empty word"
        if not isinstance(tags, list) or len(tags) != len(words):
            return "tags and words differ in length"
        return next((p for p in (label_problem(task, t) for t in tags) if p), None)

    def train_features(self, task: Any, tokenizer: Any, examples: list, max_length: int) -> list:
        """Each word's tag sits on its first subword; later subwords and specials get -100."""
        enc = tokenizer(
            [e["words"] for e in examples],
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
        )
        rows = []
        for i, example in enumerate(examples):
            labels, previous = [], None
            for word in enc.word_ids(i):
                first = word is not None and word != previous
                labels.append(example["tags"][word] if first else -100)
                previous = word
            rows.append({"input_ids": enc["input_ids"][i], "labels": labels})
        return rows

    def collator(self, task: Any, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def decode(self, task: Any, logits: torch.Tensor, labels: torch.Tensor) -> tuple[list, list]:
        """Tag-name sequences of the labelled (first-subword) positions."""
        gold_seqs, pred_seqs = [], []
        for gold_row, pred_row in zip(labels.tolist(), logits.argmax(-1).tolist(), strict=True):
            keep = [(g, p) for g, p in zip(gold_row, pred_row, strict=True) if g != -100]
            gold_seqs.append([task.labels[g] for g, _ in keep])
            pred_seqs.append([task.labels[p] for _, p in keep])
        return gold_seqs, pred_seqs

    def majority(self, task: Any, train: list, data: EvalSet) -> tuple[list, list]:
        top = task.labels[most_frequent([t for e in train for t in e["tags"]])]
        gold = [[task.labels[x] for x in f["labels"] if x != -100] for f in data.features]
        return gold, [[top] * len(g) for g in gold]

"""Multiple choice: one score per (context, choice) pair, softmax over the choices (XCOPA and its
SIQA/COPA training sets; HellaSwag, Cosmos QA, CommonsenseQA)."""

from __future__ import annotations

from typing import Any

import torch

from trainers.heads.base import SingleLabel, empty_text, label_problem


class MultipleChoice(SingleLabel):
    """Examples: {"context", "question"?, "choices": [...], "label"}; a task's `labels` name its
    choice positions, so every example of the task has that many choices. Gold and predicted are
    choice indices."""

    name = "multiple_choice"
    head_class = "XLMRobertaForMultipleChoice"  # one linear score per choice: any choice count

    def check(self, task: Any, example: dict) -> str | None:
        choices = example.get("choices")
        if not isinstance(choices, list) or len(choices) != len(task.labels):
            return "wrong number of choices"
        if any(not isinstance(c, str) or not c.strip() for c in choices):
            return "empty choice"
        return empty_text(example, ("context",)) or label_problem(task, example.get("label"))

    def train_features(self, task: Any, tokenizer: Any, examples: list, max_length: int) -> list:
        firsts, seconds = [], []
        for e in examples:
            first = f"{e['context']} {e.get('question') or ''}".strip()
            firsts += [first] * len(e["choices"])
            seconds += list(e["choices"])
        enc = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
        rows, start = [], 0
        for e in examples:
            n = len(e["choices"])
            rows.append({"choices": enc["input_ids"][start : start + n], "labels": e["label"]})
            start += n
        return rows

    def length(self, feature: dict) -> int:
        return max(len(ids) for ids in feature["choices"])

    def collator(self, task: Any, tokenizer: Any) -> Any:
        pad_id = tokenizer.pad_token_id

        def collate(features: list[dict]) -> dict[str, torch.Tensor]:
            width = max(self.length(f) for f in features)
            n = len(features[0]["choices"])
            ids = torch.full((len(features), n, width), pad_id, dtype=torch.long)
            for row, f in enumerate(features):
                for j, choice in enumerate(f["choices"]):
                    ids[row, j, : len(choice)] = torch.tensor(choice)
            return {
                "input_ids": ids,
                "attention_mask": (ids != pad_id).long(),
                "labels": torch.tensor([f["labels"] for f in features]),
            }

        return collate

    def blank(self, example: dict) -> dict:
        """No context and no choice text: the null model can only learn the label prior."""
        return {**example, "context": "", "question": "", "choices": [""] * len(example["choices"])}

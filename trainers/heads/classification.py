"""Sentence and sentence-pair classification (XNLI, PAWS-X style; MNLI, QQP, SST-2 ...)."""

from __future__ import annotations

import functools
from typing import Any

from trainers.heads.base import SingleLabel, empty_text, label_maps, label_problem


class Classification(SingleLabel):
    """Examples: {"text", "text_pair"?, "label"}; the gold and predicted shape is label ids."""

    name = "classification"
    head_class = "XLMRobertaForSequenceClassification"

    def model_class(self, pooling: str = "cls") -> Any:
        """XLM-R's head on the `<s>` state (`cls`, as XTREME-R), or on the mean of every token's
        state (`mean`: the synthetic demo's encoder, whose MLM pretraining never trains `<s>`)."""
        return mean_pooled_class() if pooling == "mean" else super().model_class(pooling)

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


@functools.cache
def mean_pooled_class() -> type:
    """XLMRobertaForSequenceClassification reading the mean of the non-padding token states.

    Same weights and head (dense, tanh, out_proj) as XLM-R's; only what the head reads changes.
    """
    import torch
    from transformers import XLMRobertaForSequenceClassification
    from transformers.modeling_outputs import SequenceClassifierOutput

    class XLMRobertaMeanPooledForSequenceClassification(XLMRobertaForSequenceClassification):
        def forward(
            self,
            input_ids: Any = None,
            attention_mask: Any = None,
            labels: Any = None,
            **kwargs: Any,
        ) -> SequenceClassifierOutput:
            if attention_mask is None:
                attention_mask = (input_ids != self.config.pad_token_id).long()
            states = self.roberta(input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
            logits = self.classifier(pooled.unsqueeze(1))  # the head reads position 0
            loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return XLMRobertaMeanPooledForSequenceClassification

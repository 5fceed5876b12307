"""One head builder and one collator per task format; every task of a format shares them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainers.tasks import Example, Task

# XLM-R classes by format: the hub checkpoints and the synthetic encoder load the same way
HEAD_CLASSES = {
    "classification": "XLMRobertaForSequenceClassification",
    "tagging": "XLMRobertaForTokenClassification",
}


def build_model(task: Task, encoder_dir: Path, random_init: bool = False) -> Any:
    """The task's head on the encoder in `encoder_dir`, or on a random encoder of the same shape.

    `num_labels` is always explicit: an encoder's saved config may carry another task's label count.
    """
    import transformers

    cls = getattr(transformers, HEAD_CLASSES[task.format])
    labels = {
        "id2label": dict(enumerate(task.labels)),
        "label2id": {n: i for i, n in enumerate(task.labels)},
    }
    if random_init:  # the no-pretraining control
        config = transformers.XLMRobertaConfig.from_pretrained(
            encoder_dir, num_labels=len(task.labels), **labels
        )
        return cls(config)
    return cls.from_pretrained(encoder_dir, num_labels=len(task.labels), **labels)


def encode(task: Task, tokenizer: Any, examples: list[Example], max_length: int) -> list[dict]:
    """Token ids and labels; tagging labels sit on each word's first subword, -100 elsewhere."""
    if task.format == "classification":
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


def collator(task: Task, tokenizer: Any) -> Any:
    """Dynamic padding to the longest example of each batch."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    if task.format == "tagging":
        return DataCollatorForTokenClassification(tokenizer)
    return DataCollatorWithPadding(tokenizer)


def decode(task: Task, logits: Any, labels: Any) -> tuple[list, list]:
    """(gold, predicted) in the metric's shape: label ids, or tag-name sequences per sentence."""
    pred = logits.argmax(-1)
    if task.format == "classification":
        return labels.tolist(), pred.tolist()
    gold_seqs, pred_seqs = [], []
    for gold_row, pred_row in zip(labels.tolist(), pred.tolist(), strict=True):
        keep = [(g, p) for g, p in zip(gold_row, pred_row, strict=True) if g != -100]
        gold_seqs.append([task.labels[g] for g, _ in keep])
        pred_seqs.append([task.labels[p] for _, p in keep])
    return gold_seqs, pred_seqs

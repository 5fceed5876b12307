"""Difficulty measures of an intermediate task beyond its English dev score.

- Pointwise V-information (Ethayarajh et al. 2022): PVI(x -> y) = -log2 g_null(y) + log2 g(y | x),
  where g is the model fine-tuned on the task and g_null the same model fine-tuned on the same
  labels with empty inputs. Its mean over the English dev set estimates the V-usable information
  of the task, in bits: low means hard (little of the label is learnable from the input).
- Task embeddings (TextEmb, Vu et al. 2020): the mean of mean-pooled encoder states over a task's
  inputs, under the pretrained encoder; cosine between two tasks is their similarity, a competing
  explanation of transfer.

The null model is a trial of its own (sweep.trial runs it beside its intermediate, with
`FineTune(blank_inputs=True)`); this module holds what it and the intermediate record.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.tasks import Task, TaskData

if TYPE_CHECKING:
    from trainers.loop import Outcome


def pointwise_v_information(
    log2_p_model: Sequence[float], log2_p_null: Sequence[float]
) -> np.ndarray:
    """PVI of each example, in bits, from log2 probabilities of its gold label under both models."""
    model, null = np.asarray(log2_p_model, float), np.asarray(log2_p_null, float)
    if model.shape != null.shape or model.ndim != 1 or not len(model):
        raise ValueError(
            f"pvi: need two equally long non-empty lists, got {model.shape} and {null.shape}"
        )
    return model - null


def v_information(log2_p_model: Sequence[float], log2_p_null: Sequence[float]) -> float:
    """Dataset-level V-usable information: the mean PVI (bits)."""
    return float(pointwise_v_information(log2_p_model, log2_p_null).mean())


def text_embedding(
    encoder_dir: Path, texts: Sequence[str], max_length: int, batch_size: int = 64
) -> np.ndarray:
    """Mean over texts of the attention-masked mean of the encoder's last hidden states."""
    import torch
    from transformers import XLMRobertaModel

    from trainers.encoder import load_tokenizer

    if not texts:
        raise ValueError("text embedding: no texts")
    tokenizer = load_tokenizer(encoder_dir)
    model = XLMRobertaModel.from_pretrained(encoder_dir).eval()
    total, count = None, 0
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"][..., None].to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            total = pooled.sum(0) if total is None else total + pooled.sum(0)
            count += len(pooled)
    return (total / count).numpy()


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def model_log2_probs(fmt: Any, task: Any, model: Any, eval_set: Any, batch_size: int) -> list:
    device = next(model.parameters()).device
    model.eval()
    return fmt.gold_log2_probs(task, model, eval_set, batch_size, device)


def has_log_probs(task: Task) -> bool:
    """Whether the task's format scores gold labels as probabilities (V-information needs them)."""
    from trainers.heads import Format, get_format

    return type(get_format(task.format)).gold_log2_probs is not Format.gold_log2_probs


def mean_log2_prob(task: Task, outcome: Outcome, batch_size: int) -> float:
    """Mean log2 probability of the gold English dev labels under the trained model (bits).

    V-usable information is this minus the same mean under the null model (the `null` trial's
    `null_log2_prob` row): a difference of two means, so each trial records its own and the
    analysis subtracts (analysis.gains.difficulty_table)."""
    from trainers.heads import get_format

    fmt = get_format(task.format)
    return float(np.mean(model_log2_probs(fmt, task, outcome.model, outcome.dev_set, batch_size)))


def judge_null_model(record: dict[str, Any]) -> dict[str, Any]:
    """The health record of a null model (trainers.health's), judged by its loss alone: it is
    meant to score at the majority baseline, so only a falling loss says it trained."""
    fell = record["loss_end"] < record["loss_start"]
    return {
        **record,
        "healthy": fell,
        "reason": None if fell else "null model: training loss did not fall",
    }


EMBEDDING_TEXTS = 256  # inputs averaged into a task embedding (TextEmb)


def task_embedding(
    task: Task, data: TaskData, encoder_dir: Path, max_length: int
) -> dict[str, Any] | None:
    """The task's TextEmb under `encoder_dir` (the pretrained encoder) from the first
    EMBEDDING_TEXTS English training inputs (a test split's where there is no training set:
    Tatoeba); None when the task has no text to embed."""
    from trainers.heads.base import text_of

    examples = data.train.get("en") or next(iter(data.test.values()), [])
    texts = [text_of(e) for e in examples[:EMBEDDING_TEXTS]]
    texts = [t for t in texts if t.strip()]
    if not texts:
        return None
    vector = text_embedding(encoder_dir, texts, max_length)
    return {"task": task.name, "n_texts": len(texts), "vector": vector.tolist()}

"""Difficulty measures of an intermediate task beyond its English dev score.

- Pointwise V-information (Ethayarajh et al. 2022): PVI(x -> y) = -log2 g_null(y) + log2 g(y | x),
  where g is the model fine-tuned on the task and g_null the same model fine-tuned on the same
  labels with empty inputs. Its mean over the English dev set estimates the V-usable information
  of the task, in bits: low means hard (little of the label is learnable from the input).
- Task embeddings (TextEmb, Vu et al. 2020): the mean of mean-pooled encoder states over a task's
  inputs, under the pretrained encoder; cosine between two tasks is their similarity, a competing
  explanation of transfer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


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

"""Official XTREME-R metrics as plain functions of predictions (fractions in [0, 1]; no torch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def accuracy(gold: Sequence[int], pred: Sequence[int]) -> float:
    if len(gold) != len(pred):
        raise ValueError(f"accuracy: {len(gold)} gold labels but {len(pred)} predictions")
    if not gold:
        raise ValueError("accuracy: no examples")
    return float(np.mean(np.asarray(gold) == np.asarray(pred)))


def tagging_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """seqeval F1 with no IOB scheme, as the official UD-POS and NER evaluation calls it.

    POS tags have no B-/I- prefix: seqeval reads the first character as one and merges neighbouring
    equal tags into one chunk. That quirk is the official number, so it is kept, not fixed.
    """
    import warnings

    from seqeval.metrics import f1_score

    _check_lengths(gold, pred)
    with warnings.catch_warnings():  # "NOUN seems not to be NE tag": the quirk, expected
        warnings.simplefilter("ignore", UserWarning)
        return float(f1_score([list(g) for g in gold], [list(p) for p in pred]))


def token_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    _check_lengths(gold, pred)
    flat_gold = [t for sent in gold for t in sent]
    flat_pred = [t for sent in pred for t in sent]
    return float(np.mean([g == p for g, p in zip(flat_gold, flat_pred, strict=True)]))


def _check_lengths(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"tagging: {len(gold)} gold sentences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"tagging: sentence {i} has {len(g)} gold tags but {len(p)} predicted")


# metric families by task format; the first metric of a family is the task's official score
METRICS: dict[str, dict[str, Callable[..., float]]] = {
    "classification": {"accuracy": accuracy},
    "tagging": {"f1": tagging_f1, "token_accuracy": token_accuracy},
}


def score(fmt: str, gold: Sequence, pred: Sequence) -> dict[str, float]:
    """Every metric of the format's family."""
    return {name: fn(gold, pred) for name, fn in METRICS[fmt].items()}


def primary_metric(fmt: str) -> str:
    return next(iter(METRICS[fmt]))

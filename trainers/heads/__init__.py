"""Task formats: one head, encoding, loss and decoding per format, shared by all of its tasks.

A new format is one module here with a `Format` subclass, one entry in FORMATS and a metric
family in `trainers.metrics`; a new task in an existing format needs no code at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainers.heads.base import EvalSet, Format
from trainers.heads.choice import MultipleChoice
from trainers.heads.classification import Classification
from trainers.heads.qa import SpanQA
from trainers.heads.retrieval import DualEncoder, SentenceRetrieval
from trainers.heads.tagging import Tagging

if TYPE_CHECKING:
    from trainers.tasks import Task

FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in (
        Classification(),
        MultipleChoice(),
        Tagging(),
        SpanQA(),
        DualEncoder(),
        SentenceRetrieval(),
    )
}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise KeyError(f"unknown task format {name!r}; known: {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def build_model(task: Task, encoder_dir: Path, random_init: bool = False) -> Any:
    """The task's head on the encoder in `encoder_dir` (or a random encoder of its shape)."""
    return get_format(task.format).build_model(task, encoder_dir, random_init)


def encoder_of(model: Any) -> Any:
    """The bare XLMRobertaModel inside a head model (a bare model is its own encoder)."""
    return model.base_model


__all__ = ["FORMATS", "EvalSet", "Format", "build_model", "encoder_of", "get_format"]

"""What a task format provides to the one training loop, and the defaults most formats share.

A format is the unit of code: its head, how examples become model inputs, the training loss and
how a model's outputs become the (gold, predicted) pairs its metric family scores. Every task of a
format shares all of it; a task only declares data (`trainers.tasks.Task`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainers.tasks import Example, Task


@dataclass
class EvalSet:
    """One language's evaluation data, encoded once and scored every epoch (dev) or once (test).

    `features` are the model inputs, `examples` the raw examples (gold answers, contexts),
    `collate` batches features, and `extra` holds what else the format needs (a retrieval pool).
    """

    features: list[dict]
    examples: list[Example]
    collate: Callable[[list[dict]], dict] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.examples)


class Format:
    """Defaults: a transformers head class loaded on the encoder, `model(**batch).loss`."""

    name: str = ""
    head_class: str | None = None  # transformers class; None: the bare XLMRobertaModel
    trainable: bool = True  # False: scored straight from the encoder (Tatoeba)

    # ---- model ----
    def build_model(
        self, task: Task, encoder_dir: Path, random_init: bool = False, pooling: str = "cls"
    ) -> Any:
        """The format's head on the encoder in `encoder_dir`, or on a random encoder of its shape.

        `num_labels` is always explicit: an encoder's saved config may carry another task's count.
        `pooling` (TrainConfig.pooling) matters only to formats with a sentence-level head.
        """
        import transformers

        cls = self.model_class(pooling)
        kwargs = self.head_kwargs(task)
        if random_init:  # the no-pretraining control
            config = transformers.XLMRobertaConfig.from_pretrained(encoder_dir, **kwargs)
            return cls(config)
        return cls.from_pretrained(encoder_dir, **kwargs)

    def model_class(self, pooling: str = "cls") -> Any:
        import transformers

        return getattr(transformers, self.head_class or "XLMRobertaModel")

    def head_kwargs(self, task: Task) -> dict[str, Any]:
        return {}

    # ---- data ----
    def check(self, task: Task, example: Example) -> str | None:
        """Why an example is malformed, or None; `trainers.quality` counts and drops them."""
        return None

    def train_features(
        self, task: Task, tokenizer: Any, examples: list[Example], max_length: int
    ) -> list[dict]:
        raise NotImplementedError

    def length(self, feature: dict) -> int:
        """Tokens in a training feature, for length-grouped batches."""
        return len(feature["input_ids"])

    def collator(self, task: Task, tokenizer: Any) -> Callable[[list[dict]], dict]:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def loss(self, model: Any, batch: dict) -> Any:
        return model(**batch).loss

    # ---- evaluation ----
    def eval_set(
        self,
        task: Task,
        tokenizer: Any,
        examples: list[Example],
        max_length: int,
        pool: list[dict] | None = None,
    ) -> EvalSet:
        raise NotImplementedError

    def predict(
        self, task: Task, model: Any, data: EvalSet, batch_size: int, device: Any
    ) -> tuple[list, list]:
        """(gold, predicted) in the shape the task's metric family takes."""
        raise NotImplementedError

    def gold_log2_probs(
        self, task: Task, model: Any, data: EvalSet, batch_size: int, device: Any
    ) -> list[float]:
        """log2 p(gold | input) per example, for pointwise V-information (label formats only)."""
        raise NotImplementedError(f"{self.name}: no per-example label probability")

    def blank(self, example: Example) -> Example:
        """The example with its input emptied and its label kept: the null model's data."""
        raise NotImplementedError(f"{self.name}: inputs cannot be blanked")

    def majority(self, task: Task, train: list[Example], data: EvalSet) -> tuple[list, list] | None:
        """(gold, predicted) of always answering the most frequent English training label; None
        where no such baseline exists (span QA, retrieval)."""
        return None


class Labelled(Format):
    """Formats whose features carry their gold labels (classification, multiple choice, tagging):
    evaluation encodes like training and scores the logits of length-sorted batches."""

    def eval_set(
        self,
        task: Task,
        tokenizer: Any,
        examples: list[Example],
        max_length: int,
        pool: list[dict] | None = None,
    ) -> EvalSet:
        features = self.train_features(task, tokenizer, examples, max_length)
        return EvalSet(features, examples, self.collator(task, tokenizer))

    def logits(
        self, model: Any, data: EvalSet, batch_size: int, device: Any
    ) -> Iterator[tuple[Any, Any]]:
        """(float32 CPU logits, labels) per length-sorted batch."""
        import torch

        lengths = [self.length(f) for f in data.features]
        with torch.no_grad():
            for idx in length_batches(lengths, batch_size):
                batch = data.collate([data.features[i] for i in idx])
                labels = batch.pop("labels")
                out = model(**{k: v.to(device) for k, v in batch.items()}).logits
                yield out.float().cpu(), labels

    def predict(
        self, task: Task, model: Any, data: EvalSet, batch_size: int, device: Any
    ) -> tuple[list, list]:
        gold: list = []
        pred: list = []
        for logits, labels in self.logits(model, data, batch_size, device):
            g, p = self.decode(task, logits, labels)
            gold += g
            pred += p
        return gold, pred

    def decode(self, task: Task, logits: Any, labels: Any) -> tuple[list, list]:
        """(gold, predicted) of one batch; here one label id per example."""
        return labels.tolist(), logits.argmax(-1).tolist()


class SingleLabel(Labelled):
    """One label per example (classification, multiple choice): the label probability behind
    V-information and a most-frequent-label baseline."""

    def gold_log2_probs(
        self, task: Task, model: Any, data: EvalSet, batch_size: int, device: Any
    ) -> list[float]:
        out: list[float] = []
        for logits, labels in self.logits(model, data, batch_size, device):
            out += log2_prob_of(logits, labels)
        return out

    def majority(self, task: Task, train: list[Example], data: EvalSet) -> tuple[list, list]:
        top = most_frequent([e["label"] for e in train])
        gold = [e["label"] for e in data.examples]
        return gold, [top] * len(gold)


def text_of(example: Example) -> str:
    """Every input text of an example joined (labels, ids and answers left out): what a task's
    text embedding (task similarity, Vu et al. 2020) averages over."""
    parts = []
    for key, value in example.items():
        if key in ("id", "label", "tags", "gold", "answers"):
            continue
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            parts.append(" ".join(value))
    return " ".join(parts)


def log2_prob_of(logits: Any, labels: Any) -> list[float]:
    import math

    import torch

    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, labels[:, None])[:, 0]
    return (log_probs / math.log(2)).tolist()


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices in length-sorted batches: evaluation pads little and each batch is one forward."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def by_length(features: Sequence[dict], batch_size: int, key: str = "input_ids") -> Iterator[list]:
    """length_batches of features by the length of one of their fields."""
    return length_batches([len(f[key]) for f in features], batch_size)


def label_maps(task: Task) -> dict[str, Any]:
    """num_labels and both label maps, for heads with one output per label (not multiple choice,
    whose head scores each choice); always explicit, since an encoder's saved config may carry
    another task's label count."""
    return {
        "num_labels": len(task.labels),
        "id2label": dict(enumerate(task.labels)),
        "label2id": {n: i for i, n in enumerate(task.labels)},
    }


def most_frequent(values: Sequence[Any]) -> Any:
    return Counter(values).most_common(1)[0][0]


def label_problem(task: Task, label: object, n: int | None = None) -> str | None:
    """A label must be an integer in [0, n) (n: the task's label count unless given)."""
    if isinstance(label, bool) or not isinstance(label, int):
        return "label not an integer"
    if not 0 <= label < (len(task.labels) if n is None else n):
        return "label outside the label set"
    return None


def empty_text(example: Example, fields: Sequence[str]) -> str | None:
    for name in fields:
        if name in example and (not isinstance(example[name], str) or not example[name].strip()):
            return f"empty {name}"
    return None

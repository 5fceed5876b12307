"""Accelerator memory of one fine-tuning trial, per task, before anything is loaded.

Training memory = static + activations:
- static: float32 weights, gradients and AdamW's two moments, 16 bytes per parameter (also under
  bf16 autocast, which keeps float32 master weights); the best-on-dev copy lives on the CPU.
- activations of a transformer layer, kept for the backward pass without recomputation:
  s*b*h*(34 + 5*a*s/h) bytes with 16-bit activations (Korthikanti et al. 2022, "Reducing
  Activation Recomputation in Large Transformer Models", eq. 1; s tokens, b examples, h hidden
  size, a heads), twice that in float32. Per micro-batch: accumulation cuts this part only.
The estimate leaves out the CUDA context, allocator fragmentation and the head (a few hundred MB
to a GB or two): it says whether a setting can fit, not the exact peak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainers.settings import ModelConfig, TrainConfig

GB = 1e9


@dataclass(frozen=True)
class Shape:
    """What of an encoder decides its memory."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    positions: int

    @property
    def parameters(self) -> int:
        """XLM-R's count: embeddings (words, positions, one type) and their LayerNorm, layers
        (attention q, k, v, o; feed-forward; two LayerNorms), the pooler."""
        h, i = self.hidden, self.intermediate
        embeddings = (self.vocab + self.positions + 1) * h + 2 * h
        layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h
        return embeddings + self.layers * layer + h * h + h


# the published XLM-R checkpoints (their config.json), so `itx plan` needs no download
HUB_SHAPES = {
    "xlm-roberta-base": Shape(768, 12, 12, 3072, 250_002, 514),  # 278,043,648 parameters
    "xlm-roberta-large": Shape(1024, 24, 16, 4096, 250_002, 514),  # 559,890,432 parameters
}


@dataclass(frozen=True)
class Estimate:
    static_gb: float
    activations_gb: float

    @property
    def total_gb(self) -> float:
        return self.static_gb + self.activations_gb


def training_memory(
    shape: Shape, batch_size: int, max_length: int, mixed_precision: str = "bf16"
) -> Estimate:
    """Memory of training `shape` on micro-batches of `batch_size` x `max_length` tokens."""
    s, b, h, a = max_length, batch_size, shape.hidden, shape.heads
    per_layer = s * b * h * (34 + 5 * a * s / h)
    width = 1 if mixed_precision in ("bf16", "fp16") else 2
    return Estimate(16 * shape.parameters / GB, shape.layers * per_layer * width / GB)


def shape_of(encoder_name: str | None, model: ModelConfig) -> Shape | None:
    """The shape of the study's encoder: a known hub checkpoint, the synthetic model, or None."""
    if encoder_name is None:
        return Shape(
            model.hidden_size,
            model.num_hidden_layers,
            model.num_attention_heads,
            model.intermediate_size,
            model.vocab_size,
            model.max_length + 2,
        )
    return HUB_SHAPES.get(encoder_name.rstrip("/").rsplit("/", 1)[-1])


def sequences_per_example(task: Any) -> int:
    """Encoder rows one training example becomes: a multiple-choice question one per choice
    (trainers/heads/choice.py), a dual-encoder pair its query and its answer."""
    if task.format == "multiple_choice":
        return len(task.labels)
    return 2 if task.format == "dual_encoder" else 1


def task_memory(exp: Any) -> dict[str, tuple[TrainConfig, int, Estimate | None]] | None:
    """Per task of an experiment (intermediates, targets, their earlier stages): its settings,
    length and estimate (None: not trained, scored from the encoder); None for an encoder of
    unknown shape."""
    from trainers.heads import get_format  # imports torch: only once a config is valid

    shape = shape_of(exp.encoder.name if exp.encoder else None, exp.model)
    if shape is None:
        return None
    names = list(dict.fromkeys([*exp.intermediates, *exp.targets]))
    names += [s for n in list(names) for s in exp.task(n).before if s not in names]
    out: dict[str, tuple[TrainConfig, int, Estimate | None]] = {}
    for name in names:
        train, length = exp.train_for(name), exp.max_length_for(name)
        task = exp.task(name)
        trained = get_format(task.format).trainable
        rows = train.batch_size * sequences_per_example(task)
        est = training_memory(shape, rows, length, train.mixed_precision)
        out[name] = (train, length, est if trained else None)
    return out


def memory_lines(exp: Any) -> list[str]:
    """What `itx plan` prints: one line per task, the largest first."""
    found = task_memory(exp)
    if found is None:
        return ["  memory per trial: unknown encoder shape (estimates cover XLM-R base and large)"]
    lines = ["  memory per trial (estimate, trainers/memory.py), largest first:"]
    ranked = sorted(found.items(), key=lambda kv: -(kv[1][2].total_gb if kv[1][2] else 0))
    for name, (train, length, est) in ranked:
        if est is None:
            lines.append(f"    {name}: not trained (scored from the encoder)")
            continue
        # GB for XLM-R, MB for the synthetic encoder (whose trials would all print 0.0 GB)
        unit, scale = ("GB", 1.0) if est.total_gb >= 0.1 else ("MB", 1000.0)
        lines.append(
            f"    {name}: {est.total_gb * scale:.1f} {unit} ({est.static_gb * scale:.1f} static + "
            f"{est.activations_gb * scale:.1f} activations): batch {train.batch_size} x "
            f"accumulation {train.gradient_accumulation_steps} x {length} tokens"
        )
    return lines

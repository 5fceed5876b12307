"""Settings of the trainers as frozen pydantic models: light to import (no torch), so configs
validate before anything heavy loads."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from trainers.world import WorldConfig

FORMAT_VERSION = 2  # bump when the world generator or pretraining code changes what it builds


class ModelConfig(BaseModel):
    """Encoder shape. The defaults are the tiny XLM-R-shaped model of the synthetic benchmark."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_size: int = Field(64, ge=8, le=4096)
    num_hidden_layers: int = Field(2, ge=1, le=48)
    num_attention_heads: int = Field(2, ge=1, le=64)
    intermediate_size: int = Field(256, ge=8, le=16384)
    max_length: int = Field(64, ge=8, le=512)  # tokens per example, specials included
    vocab_size: int = Field(1500, ge=100, le=300_000)  # asked of the tokenizer trainer
    dropout: float = Field(0.1, ge=0, lt=1)  # hidden and attention dropout


class PretrainConfig(BaseModel):
    """MLM pretraining budget in optimizer steps (never seconds: machine load changes speed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(3000, ge=0, le=1_000_000)
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0, lt=1)
    warmup_steps: int = Field(100, ge=0)
    mask_prob: float = Field(0.15, gt=0, lt=1)
    seed: int = 0


class TrainConfig(BaseModel):
    """Fine-tuning hyperparameters, shared by intermediate and target trials."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lr: float = Field(1e-3, gt=0, lt=1)
    epochs: int = Field(6, ge=1, le=100)
    batch_size: int = Field(32, ge=1, le=4096)  # per device and micro-batch
    # micro-batches per optimizer step: effective batch = batch_size x this x devices
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    eval_batch_size: int = Field(64, ge=1, le=65536)  # length-sorted: small batches pad little
    warmup_ratio: float = Field(0.06, ge=0, le=0.5)
    weight_decay: float = Field(0.01, ge=0, le=1)
    checkpoint_every: int = Field(200, ge=1)  # optimizer steps between saved training states
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # bf16 autocast on GPUs
    compile: bool = False  # torch.compile the model (GPU runs)
    # PyTorch's deterministic GPU kernels where they exist (a warning names the others): what
    # bit-identical GPU reruns and resumes need; off by default, as some are slower. CPU runs
    # are deterministic either way (tests/trainers/test_determinism.py).
    deterministic: bool = False
    selection: Literal["en_dev"] = "en_dev"  # zero-shot: never target-language dev
    # what a sentence classification head reads: `<s>` (XLM-R, XTREME-R) or the mean of all tokens
    pooling: Literal["cls", "mean"] = "cls"


def pretrain_key(world: WorldConfig, model: ModelConfig, pretrain: PretrainConfig) -> str:
    """Content hash of everything that determines the pretrained encoder."""
    payload = json.dumps(
        [FORMAT_VERSION, world.model_dump(), model.model_dump(), pretrain.model_dump()],
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]

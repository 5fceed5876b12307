"""Shared fixtures. Tests never reach a hub; pretrained synthetic encoders are cached by content
hash under .cache/ in the repository (ignored by git), so a second run builds nothing."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COUNTS: Counter[str] = Counter()  # what the reliability tests tried, printed at the end
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("ITX_CACHE", str(ROOT / ".cache" / "itx"))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def tiny_settings() -> tuple:
    """World, model and pretraining of a seconds-scale encoder for trainer tests."""
    from trainers.settings import ModelConfig, PretrainConfig
    from trainers.world import WorldConfig

    model = ModelConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=48,
        vocab_size=600,
    )
    return WorldConfig(sentences_per_language=300), model, PretrainConfig(steps=20, batch_size=16)


def result_row(**values: object) -> dict:
    """One result row of the store schema (sweep.schema.ROWS): a target's English test accuracy,
    with `values` replacing any column."""
    from sweep.schema import OPTIONAL_COLUMNS

    row = {
        "kind": "target",
        "intermediate": "none",
        "seed": 0,
        "target_task": "nli",
        "language": "en",
        "split": "test",
        "metric": "accuracy",
        "value": 0.5,
        "n_examples": 500,
        "primary": True,
        "chance": 1 / 3,
        "majority": 0.34,
        "train_size": 2000,
        "trial_key": "k1",
        "encoder_sha": "sha",
        "seconds": 1.0,
        **OPTIONAL_COLUMNS,
    }
    return {**row, **values}


@pytest.fixture(scope="session")
def tiny_encoder() -> Path:
    """A pretrained tiny encoder folder, built once per content hash (cached across runs)."""
    from trainers.encoder import cached_pretrained

    return cached_pretrained(*tiny_settings(), threads=1)


# Half the demo's MLM budget for the two tests that need a learned encoder (transfer, planted
# difficulty): both effects show with wide margins at 1,500 steps (measured with one thread: NLI
# ov80 0.668 vs fake 0.390; topic family dev accuracy 0.550 / 0.286 / 0.162, V-information
# 1.212 / 0.221 / 0.033 bits), and the suite saves about 3.5 minutes of pretraining (about 195 s
# instead of 400 s). `make demo` shows both on the full budget.
DEMO_TEST_PRETRAIN_STEPS = 1500


@pytest.fixture(scope="session")
def demo_setup() -> tuple:
    """(demo experiment, encoder folder): the demo's world, model and training settings with
    DEMO_TEST_PRETRAIN_STEPS of pretraining, built once per content hash (cached across runs)."""
    from sweep.config import load_config
    from trainers.encoder import cached_pretrained

    exp = load_config(ROOT / "configs" / "demo.yaml")
    exp = exp.model_copy(
        update={"pretrain": exp.pretrain.model_copy(update={"steps": DEMO_TEST_PRETRAIN_STEPS})}
    )
    # one thread: two threads on a core shared with anything else run 20-40x slower
    return exp, cached_pretrained(exp.world, exp.model, exp.pretrain, threads=1)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.items:  # exit code 5 must never pass silently
        raise pytest.UsageError("no tests collected")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if COUNTS:
        terminalreporter.section("reliability counts")
        for what, n in sorted(COUNTS.items()):
            terminalreporter.write_line(f"{what}: {n}")

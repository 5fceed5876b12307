"""Ray overhead of a sweep: wall time minus trial work, per trial; parallel efficiency on 2 CPUs.

    .venv/bin/python benchmarks/ray_overhead.py

Runs the same small real sweep (tests/fixtures/tiny.yaml with 4 seeds: 41 trials) through the real
runner twice, with 1 and with 2 concurrent trials, each into a fresh store (the pretrained encoder
comes from the machine cache). Trial work is Tune's own `time_total_s` of each trial function.
Ray is started before timing, so its start-up (4-6 s) is not counted as per-trial overhead.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import ray
from ray.tune import ExperimentAnalysis

from sweep.config import load_config
from sweep.runner import run_sweep

ROOT = Path(__file__).resolve().parents[1]


def one(concurrent: int) -> tuple[float, float, int]:
    storage = tempfile.mkdtemp(prefix="itx-overhead-")
    exp = load_config(
        ROOT / "tests" / "fixtures" / "tiny.yaml",
        {
            "storage": storage,
            "seeds": [0, 1, 2, 3],
            "resources": {"cpu": 1, "pretrain_cpu": 1, "max_concurrent_trials": concurrent},
        },
    )
    start = time.perf_counter()
    outcome = run_sweep(exp, verbose=0)
    wall = time.perf_counter() - start
    frame = ExperimentAnalysis(f"{storage}/{exp.name}/tune").dataframe()
    return wall, float(frame["time_total_s"].sum()), len(outcome.issued)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        one(2)  # warm-up: builds the tiny pretrained encoder into the cache, imports everything
        wall1, work1, n = one(1)
        wall2, work2, _ = one(2)
    finally:
        ray.shutdown()
    overhead1 = (wall1 - work1) / n
    overhead2 = (2 * wall2 - work2) / n  # two slots: slot-seconds not spent in trial functions
    print(
        f"{n} trials; 1 slot: wall {wall1:.1f} s, trial work {work1:.1f} s; "
        f"2 slots: wall {wall2:.1f} s, trial work {work2:.1f} s"
    )
    print(
        f"per-trial overhead: {overhead1:.2f} s (1 slot), {overhead2:.2f} s (2 slots); target < 1 s"
    )
    print(f"parallel efficiency, 2 slots vs 1: {wall1 / (2 * wall2):.3f} (target >= 0.85)")


if __name__ == "__main__":
    main()

"""Sweep scheduling: makespan of the DAG release (the real DagSearcher) against a barrier between
stages and the list-scheduling lower bound, by discrete-event simulation (no training, no Ray).

    .venv/bin/python benchmarks/scheduling.py

Durations are uneven on purpose: intermediate tasks differ in size (log-normal around 1 hour on a
GPU) and target tasks in cost (QA and tagging several times classification); every trial gets its
own noise. Also prints intermediate trainings against the naive grid (intermediate x seed x target).
"""

from __future__ import annotations

import heapq
import itertools

import numpy as np
from ray.tune.search import Searcher

from sweep.config import parse_config
from sweep.plan import TrialSpec, build_plan
from sweep.searcher import DagSearcher

# GPU-hours of one target trial (XLM-R base scale): QA is long, Tatoeba has no training
TARGET_HOURS = {
    "nli": 0.6,
    "pos": 1.2,  # the demo's synthetic targets
    "xnli": 3.0,
    "xcopa": 0.3,
    "udpos": 1.0,
    "panx": 1.2,
    "xquad": 2.5,
    "mlqa": 2.5,
    "tydiqa": 0.6,
    "mewslix": 1.5,
    "lareqa": 2.0,
    "tatoeba": 0.05,
}
STUDY_TARGETS = (
    "xnli",
    "xcopa",
    "udpos",
    "panx",
    "xquad",
    "mlqa",
    "tydiqa",
    "mewslix",
    "lareqa",
    "tatoeba",
)


def durations(trials: list[TrialSpec], rng: np.random.Generator) -> dict[str, float]:
    size = {}
    out = {}
    for t in trials:
        if t.kind == "pretrain":
            out[t.key] = 0.5
        elif t.kind == "intermediate":
            size.setdefault(t.intermediate, rng.lognormal(0, 0.6))
            out[t.key] = size[t.intermediate] * rng.lognormal(0, 0.1)
        else:
            out[t.key] = TARGET_HOURS[t.target_task] * rng.lognormal(0, 0.25)
    return out


def simulate_dag(trials: list[TrialSpec], hours: dict[str, float], workers: int) -> float:
    """Drive the real searcher: whenever a worker is free, ask it; complete trials in time order."""
    searcher = DagSearcher(trials, set(), {})
    searcher.set_max_concurrency(workers)
    clock, running, ids = 0.0, [], itertools.count()
    while True:
        while len(running) < workers:
            trial_id = f"t{next(ids)}"
            suggestion = searcher.suggest(trial_id)
            if suggestion is None or suggestion == Searcher.FINISHED:
                break
            key = suggestion["spec"]["key"]
            heapq.heappush(running, (clock + hours[key], trial_id))
        if not running:
            return clock
        clock, trial_id = heapq.heappop(running)
        searcher.on_trial_complete(trial_id, {"done": 1})


def simulate_barrier(trials: list[TrialSpec], hours: dict[str, float], workers: int) -> float:
    """Each stage starts when the previous one has finished (two Tuner runs in a row)."""
    clock = 0.0
    for kind in ("pretrain", "intermediate", "target"):
        free = [clock] * workers
        for t in (t for t in trials if t.kind == kind):  # greedy list scheduling inside a stage
            start = heapq.heappop(free)
            heapq.heappush(free, start + hours[t.key])
        clock = max(free)
    return clock


def lower_bound(trials: list[TrialSpec], hours: dict[str, float], workers: int) -> float:
    finish: dict[str, float] = {}
    for t in trials:  # parents first
        finish[t.key] = hours[t.key] + (finish[t.parent] if t.parent else 0.0)
    return max(max(finish.values()), sum(hours.values()) / workers)


def main() -> None:
    designs = {
        "demo (2 x 2 x 2)": (("topic_easy", "topic_hard"), (0, 1), 2),
        "study size (13 x 10 x 10)": (("topic_easy",) * 13, tuple(range(10)), 16),
        "study size, large cluster": (("topic_easy",) * 13, tuple(range(10)), 64),
    }
    print(
        f"{'design':<27}{'workers':>8}{'DAG':>8}{'barrier':>9}{'bound':>8}"
        f"{'DAG/bound':>10}{'barrier/DAG':>12}{'inter':>7}{'naive':>7}"
    )
    for label, (inters, seeds, workers) in designs.items():
        names = [f"i{k}" for k in range(len(inters))]
        exp = parse_config(
            {
                "name": "b",
                "intermediates": ["topic_easy", "topic_hard"],
                "targets": ["nli", "pos"],
                "languages": ["en"],
                "seeds": list(seeds),
            }
        )
        trials = build_plan(exp)
        targets = exp.targets
        if len(names) > 2:  # the study's design: 13 intermediates, 10 XTREME-R targets
            targets = STUDY_TARGETS
            trials = _widen(trials, names, targets)
        ratios = []
        for rep in range(20):
            hours = durations(trials, np.random.default_rng(rep))
            dag = simulate_dag(trials, hours, workers)
            barrier = simulate_barrier(trials, hours, workers)
            bound = lower_bound(trials, hours, workers)
            ratios.append((dag, barrier, bound))
        dag, barrier, bound = np.mean(ratios, axis=0)
        inter = sum(t.kind == "intermediate" for t in trials)
        naive = len(names) * len(seeds) * len(targets)
        print(
            f"{label:<27}{workers:>8}{dag:>8.2f}{barrier:>9.2f}{bound:>8.2f}"
            f"{dag / bound:>10.3f}{barrier / dag:>12.3f}{inter:>7}{naive:>7}"
        )
    print(
        "hours, mean of 20 duration draws; targets: DAG/bound <= 1.10, barrier/DAG > 1, "
        "intermediate trainings = intermediates x seeds"
    )


def _widen(trials: list[TrialSpec], names: list[str], targets: tuple[str, ...]) -> list[TrialSpec]:
    """The plan of `names` intermediates, built from a two-intermediate plan's pattern."""
    pre = trials[0]
    seeds = sorted({t.seed for t in trials if t.seed is not None})
    out, encoder = [pre], {}
    for seed in seeds:
        for name in names:
            spec = TrialSpec(
                key=f"{name}-{seed}",
                kind="intermediate",
                intermediate=name,
                seed=seed,
                parent=pre.key,
            )
            encoder[name, seed] = spec.key
            out.append(spec)
    for seed in seeds:
        for parent in ["none", "scratch", *names]:
            for target in targets:
                out.append(
                    TrialSpec(
                        key=f"{parent}-{seed}-{target}",
                        kind="target",
                        intermediate=parent,
                        seed=seed,
                        target_task=target,
                        parent=encoder.get((parent, seed), pre.key),
                    )
                )
    return out


if __name__ == "__main__":
    main()

"""Sweep scheduling on the REAL plan of configs/xtreme_r.yaml: simulated makespan of the sweep's
own searcher (`DagSearcher`) against the bound max(critical path, work / GPUs), at 16 and 64
GPUs, before and after the plan changes of issue 18 (items 4-5).

    .venv/bin/python benchmarks/scheduling.py [CONFIG] [--gpu a100]

Trial durations are `sweep.estimate` GPU-seconds: step counts from the data sets' sizes
(trainers/train_sizes.yaml) and each task's epochs, batch and max length, on the published
throughput of sweep/throughput.yaml (no GPU measured). Variants, each a plan with a policy:
- before: the V-information null model trains inside its intermediate (every child waits for
  it), every target trains its own `before` stages and SQuAD model, release in plan order;
- + shared stages: one SQuAD fine-tune per (parent, seed) for XQuAD, MLQA and Tatoeba's stage;
- + null off the path: the null model a trial of its own beside its intermediate;
- after: both, and the searcher releases the longest remaining chain first.
"""

from __future__ import annotations

import argparse

from sweep.config import load_config
from sweep.estimate import critical_path, gpu_seconds, simulate
from sweep.plan import TrialSpec, build_plan


def fold_nulls(trials: list[TrialSpec], seconds: dict[str, float]) -> tuple[list, dict]:
    """The null model back inside its intermediate: its time added to the intermediate's."""
    inter = {(t.intermediate, t.seed): t.key for t in trials if t.kind == "intermediate"}
    out = dict(seconds)
    for t in trials:
        if t.kind == "null":
            out[inter[t.intermediate, t.seed]] += out.pop(t.key)
    return [t for t in trials if t.kind != "null"], out


def unshare_stages(trials: list[TrialSpec], seconds: dict[str, float]) -> tuple[list, dict]:
    """Every target trains its own stage chain again (no shared stage trials)."""
    by_key = {t.key: t for t in trials}
    out = {k: v for k, v in seconds.items() if by_key[k].kind != "stage"}
    kept = []
    for t in trials:
        if t.kind == "stage":
            continue
        if t.kind == "target":
            total, parent = seconds[t.key], by_key[t.parent]
            while parent.kind == "stage":
                total += seconds[parent.key]
                parent = by_key[parent.parent]
            out[t.key] = total
            t = t.model_copy(update={"parent": parent.key, "parent_kind": parent.kind})
        kept.append(t)
    return kept, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", nargs="?", default="configs/xtreme_r.yaml")
    parser.add_argument("--gpu", default="a100")
    args = parser.parse_args()
    exp = load_config(args.config)
    trials = build_plan(exp)
    seconds = {t.key: gpu_seconds(exp, t, args.gpu) for t in trials}
    shared_only = fold_nulls(trials, seconds)
    null_only = unshare_stages(trials, seconds)
    before = unshare_stages(*fold_nulls(trials, seconds))
    fifo = {t.key: 0.0 for t in trials}  # every chain equal: plan order, as before
    variants = {
        "before": (*before, fifo),
        "+ shared stages": (*shared_only, fifo),
        "+ null off the path": (*null_only, fifo),
        "after (both + longest chain first)": (trials, seconds, None),
    }
    print(f"{exp.name}: {args.gpu}, durations from sweep.estimate (published throughput)")
    print(
        f"{'variant':<36}{'trials':>7}{'GPU-h':>8}{'path h':>8}"
        f"{'16: sim':>9}{'bound':>7}{'ratio':>7}{'64: sim':>9}{'bound':>7}{'ratio':>7}"
    )
    for name, (plan, hours, policy) in variants.items():
        work = sum(hours.values())
        path = critical_path(plan, hours)
        cells = []
        for gpus in (16, 64):
            wall = simulate(plan, hours, gpus, priority=policy)
            bound = max(path, work / gpus)
            cells.append(f"{wall / 3600:>9.2f}{bound / 3600:>7.2f}{wall / bound:>7.3f}")
        print(f"{name:<36}{len(plan):>7}{work / 3600:>8.1f}{path / 3600:>8.2f}{''.join(cells)}")
    print("hours; bound = max(critical path, GPU-hours / GPUs); ratio = simulated / bound")


if __name__ == "__main__":
    main()

"""The plan's CPU estimate against a finished synthetic run: what each trial took, what
`sweep.estimate` predicted, what the simulator makes of the measured durations, and the CPU
constants of sweep/throughput.yaml fitted from the run (`--fit`), or only the per-generator
costs of its tasks at the table's rate and overhead (`--costs`).

    .venv/bin/python benchmarks/plan_vs_run.py runs/demo [--fit | --costs]

Reads the run's manifest (config, trial keys, start time) and Tune's per-trial results under
<run>/tune (each trial's duration and end time). Printed:
- per trial group (stage x synthetic generator): measured median seconds against the estimate;
- the simulator on the MEASURED durations (its packing alone) against the measured span;
- the plan's wall-time estimate (`itx plan`'s figure) against the measured sweep span;
- with --fit: the constants that reproduce the run, from a least-squares fit of
  seconds = overhead + sum over trainings of k[generator] x work units (train examples and
  evaluations at `eval_speedup`), over the trials that are neither a slot's first (warm-up)
  nor restarted; the warm-up is the median excess of the slots' first trials, the start-up the
  manifest's time to the first trial, the pretraining rate its steps over its duration;
- with --costs: per synthetic generator, the median over its trials that train at full length
  (not the null model, not evaluation-only targets) and are not a slot's first, of (seconds per
  attempt - trial_overhead_s) x train_examples_per_s / work units (a restarted trial's time is
  split over its attempts: the plan cannot foresee restarts).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from sweep.config import Experiment, parse_config
from sweep.estimate import (
    cpu_seconds,
    cpu_work,
    estimate,
    simulate,
    throughput_table,
    trainings_of,
)
from sweep.plan import TrialSpec, build_plan


def measured(run: Path) -> dict[str, tuple[float, float]]:
    """Trial key -> (seconds, end time) from Tune's last result of each trial."""
    out = {}
    for result in run.glob("tune/*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        params = json.loads(result.with_name("params.json").read_text())
        if lines:
            out[params["spec"]["key"]] = (lines[-1]["time_total_s"], lines[-1]["timestamp"])
    return out


def group(exp: Experiment, spec: TrialSpec) -> str:
    runs = trainings_of(exp, spec)
    what = exp.task(runs[0].task).synthetic if runs else "-"
    return f"{spec.kind}/{what}"


def restarts(run: Path) -> dict[str, int]:
    """Trial key -> restarts of its fine-tune (0: trained once)."""
    import pandas as pd

    rows = pd.read_parquet(run / "results", columns=["trial_key", "restarts"])
    return rows.groupby("trial_key")["restarts"].max().astype(int).to_dict()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--fit", action="store_true", help="print the fitted CPU constants")
    parser.add_argument("--costs", action="store_true", help="print per-generator CPU costs")
    args = parser.parse_args()
    manifest = json.loads((args.run / "manifest.json").read_text())
    exp = parse_config(manifest["config"])
    trials = build_plan(exp)
    times = measured(args.run)
    missing = [t.key for t in trials if t.key not in times]
    if missing:
        raise SystemExit(f"error: {len(missing)} planned trials have no Tune result in {args.run}")
    created = dt.datetime.fromisoformat(manifest["created"]).timestamp()
    starts = {k: end - s for k, (s, end) in times.items()}
    first = min(starts.values())
    span = max(end for _, end in times.values()) - created
    slots = exp.resources.max_concurrent_trials
    after = sorted((starts[t.key], t.key) for t in trials if t.kind != "pretrain")
    warm = {key for _, key in after[:slots]}  # each slot's first trial after the pretraining
    restarted = restarts(args.run)
    again = {key for key, n in restarted.items() if n > 0}

    print(
        f"run {args.run}: {len(trials)} trials, {slots} slots; span {span:.1f} s from the manifest"
    )
    print(f"  start-up (manifest to the first trial): {first - created:.1f} s")
    by_group = defaultdict(list)
    for t in trials:
        by_group[group(exp, t)].append(t)
    print(f"  {'group':<22}{'trials':>7}{'measured':>10}{'estimate':>10}{'ratio':>8}")
    for name, members in by_group.items():
        steady = [t for t in members if t.key not in warm | again] or members
        m = statistics.median(times[t.key][0] for t in steady)
        e = statistics.median(cpu_seconds(exp, t) for t in steady)
        print(f"  {name:<22}{len(members):>7}{m:>10.2f}{e:>10.2f}{e / m:>8.3f}")
    seconds = {t.key: times[t.key][0] for t in trials}
    replay = first - created + simulate(trials, seconds, slots)
    print(
        f"  simulator on the measured durations: {replay:.1f} s vs {span:.1f} s measured "
        f"(ratio {replay / span:.3f})"
    )
    # the run's encoder came from the machine cache when its pretraining took a fraction of
    # the table's time: the plan is asked as of the run's start, not of this machine now
    (p,) = [t for t in trials if t.kind == "pretrain"]
    cached = times[p.key][0] < cpu_seconds(exp, p) / 4
    (wall,) = estimate(exp, trials, cached=cached).wall.values()
    print(f"  encoder {'from the machine cache' if cached else 'pretrained in the run'}")
    print(
        f"  plan estimate (itx plan): {wall:.1f} s vs {span:.1f} s measured "
        f"(ratio {wall / span:.3f})"
    )
    if args.costs:
        costs(exp, trials, times, warm, restarted)
    if args.fit:
        fit(exp, trials, times, warm | again, warm, first - created)


def fit(
    exp: Experiment,
    trials: list[TrialSpec],
    times: dict[str, tuple[float, float]],
    left_out: set[str],
    warm: set[str],
    startup: float,
) -> None:
    """Least squares of seconds on work units per synthetic generator (the module docstring)."""
    names: list[str] = []
    rows, y = [], []
    used = [t for t in trials if t.kind != "pretrain" and t.key not in left_out]
    for t in used:
        units: dict[str, float] = defaultdict(float)
        for task, work in cpu_work(exp, t).items():
            units[exp.task(task).synthetic or exp.task(task).format] += work
        names += [g for g in units if g not in names]
        rows.append(units)
        y.append(times[t.key][0])
    design = np.array([[1.0] + [u.get(g, 0.0) for g in names] for u in rows])
    coef, *_ = np.linalg.lstsq(design, np.array(y), rcond=None)
    residual = np.array(y) - design @ coef
    base = names.index("nli") if "nli" in names else 0
    rate = 1 / coef[1 + base]
    print(
        f"fit over {len(used)} trials (slots' first and restarted left out): "
        f"residual SD {residual.std(ddof=len(coef)):.2f} s"
    )
    print(f"  train_examples_per_s: {rate:.0f}  # {names[base]}, one trial per core, slots busy")
    print(f"  trial_overhead_s: {coef[0]:.2f}")
    costs = {
        g: round(float(c * rate), 3)
        for g, c in zip(names, coef[1:], strict=True)
        if g != names[base]
    }
    print(f"  task_cost: {costs}  # relative to {names[base]}")
    excess = [times[t.key][0] - cpu_seconds(exp, t) for t in trials if t.key in warm]
    print(f"  slot_warmup_s: {statistics.median(excess):.1f}  # the slots' first trials' excess")
    (pretrain,) = [t for t in trials if t.kind == "pretrain"]
    print(f"  pretrain_steps_per_s: {exp.pretrain.steps / times[pretrain.key][0]:.1f}")
    print(f"  startup_s: {startup:.1f}")


def costs(
    exp: Experiment,
    trials: list[TrialSpec],
    times: dict[str, tuple[float, float]],
    warm: set[str],
    restarted: dict[str, int],
) -> None:
    """Per-generator cost per example relative to nli at the table's rate and overhead."""
    cpu = throughput_table()["cpu"]
    found: dict[str, list[float]] = defaultdict(list)
    for t in trials:
        work = cpu_work(exp, t)
        # trainings at full length only: the null model's blank inputs and evaluation-only
        # targets are mostly overhead, not cost per example
        trained = t.kind not in ("pretrain", "null") and trainings_of(exp, t)
        if not trained or t.key in warm or len(work) != 1:
            continue
        ((task, units),) = work.items()
        attempts = 1 + restarted.get(t.key, 0)
        own = times[t.key][0] / attempts - cpu["trial_overhead_s"]
        found[exp.task(task).synthetic].append(own * cpu["train_examples_per_s"] / units)
    print(f"costs at {cpu['train_examples_per_s']} examples/s and {cpu['trial_overhead_s']} s:")
    for generator, values in sorted(found.items()):
        print(f"  {generator}: {statistics.median(values):.3f}  # {len(values)} trials")


if __name__ == "__main__":
    main()

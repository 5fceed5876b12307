"""The estimate and power sections of `itx plan`, as lines (sweep.estimate, analysis.power)."""

from __future__ import annotations

from sweep.config import Experiment
from sweep.estimate import estimate, held_by_store
from sweep.plan import TrialSpec


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,.0f} B"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.1f} min"


def estimate_lines(
    exp: Experiment,
    trials: list[TrialSpec],
    gpu: str,
    workers: tuple[int, ...],
    price: float | None,
) -> list[str]:
    try:
        done = held_by_store(exp, trials)
        held = f"{len(done)} of {len(trials)} trials already DONE in {exp.storage} (cost 0)"
    except (OSError, ValueError) as err:  # an unreachable object store: plan as if empty
        done, held = set(), f"store {exp.storage} not readable ({err}); nothing counted as reused"
    est = estimate(exp, trials, gpu, workers, price, done)
    cpu = est.device == "cpu"
    unit = "CPU-s" if cpu else "GPU-h"
    lines = [f"estimate on {est.device_name} ({'' if cpu else gpu + '; '}source: {est.source})"]
    lines.append(f"  {held}")
    header = f"  {'stage':<13}{'trials':>7}{'reused':>7}{'trainings':>10}{'steps':>12}"
    lines.append(f"{header}{'sequences':>14}{unit:>11}")
    rows = [*est.stages.items(), ("total", est.total)]
    for name, row in rows:
        device = row.seconds if cpu else row.seconds / 3600
        lines.append(
            f"  {name:<13}{row.trials:>7}{row.reused:>7}{row.trainings:>10}{row.steps:>12,}"
            f"{row.sequences:>14,}{device:>11,.1f}"
        )
    what = "trial slots" if cpu else "GPUs"
    extra = "; Ray's start-up and each slot's first-trial warm-up included" if cpu else ""
    for n, wall in est.wall.items():
        lines.append(
            f"  wall time on {n} {what}: {_hours(wall)} simulated (critical path "
            f"{_hours(est.critical_path)}, work / {n} {_hours(est.total.seconds / n)}; "
            f"bound {_hours(est.bound[n])}, ratio {wall / max(est.bound[n], 1e-9):.3f}{extra})"
        )
    stored = est.total.stored
    lines.append(
        f"  storage: {_bytes(stored)} kept (encoders and stage models, rows); training state "
        f"up to {_bytes(est.state_peak)} while the widest concurrency runs"
    )
    lines.append(
        f"  data moved through an object-store root: {_bytes(est.total.moved)} (parents in, "
        "artifacts and one training-state upload per save out)"
    )
    if est.cost is not None:
        hours = est.total.seconds / 3600
        lines.append(f"  cost: {est.cost:,.2f} at {price:g} per {unit[:3]}-hour ({hours:,.1f} h)")
    else:
        lines.append("  cost: set --price (per GPU-hour) to see it")
    lines.extend(f"  note: {note}" for note in est.notes)
    return lines


def design_of(exp: Experiment) -> object:
    """The power analysis' design of a config: intermediates, seeds, zero-shot languages."""
    from analysis.power import Design

    languages = {}
    for target in exp.targets:
        langs = [lang for lang in exp.languages_of(exp.task(target)) if lang != "en"]
        languages[target] = max(len(langs), 1)
    return Design(len(exp.intermediates), len(exp.seeds), languages)


def power_lines(exp: Experiment, pilot: str | None, reps: int) -> list[str]:
    from analysis.power import (
        ALPHA,
        POWER,
        Components,
        alternatives,
        components_from_run,
        detectable_slope,
    )

    components = components_from_run(pilot) if pilot else Components()
    c = components
    lines = [
        f"power of the headline two-stage test (t-test, two-sided alpha {ALPHA:g}, "
        f"{POWER:.0%} power; {reps} simulated studies per design):",
        f"  variance components (SD, gain points): target {c.target:.2f}, language "
        f"{c.language:.2f}, intermediate {c.intermediate:.2f}, intermediate:seed "
        f"{c.intermediate_seed:.2f}, seed {c.seed:.2f}, residual {c.residual:.2f}; {c.source}",
        "  difficulty spread: intermediates evenly over 0.1-0.8 (the simulator's)",
    ]
    for i, design in enumerate(alternatives(design_of(exp))):
        result = detectable_slope(design, components, reps=reps)
        what = "planned" if i == 0 else "alternative"
        if result.slope_80 != result.slope_80:  # nan
            lines.append(f"  {what}: {design.label}: {result.note}")
            continue
        perm = (
            f"; permutation test power there {result.permutation_power:.2f} "
            f"({result.permutation_reps} studies)"
            if result.permutation_reps
            else ""
        )
        note = f"; {result.note}" if result.note else ""
        lines.append(
            f"  {what}: {design.label}: smallest detectable slope {result.slope_80:.2f} points "
            f"per unit of difficulty{perm}{note}"
        )
    return lines

"""The power analysis checked by simulation: power predicted by `analysis.power` (from studies
simulated at slope 0, shifted exactly) against the t-test rejection rate of independent studies
simulated at each slope with full rows, at half, once and 1.5 times the 80% slope.

    .venv/bin/python benchmarks/power_check.py [REPS]

Designs: the planned configs/xtreme_r.yaml (13 intermediates x 3 seeds x its ten targets'
zero-shot languages) and the demo's targets with 6 intermediates (the demo's 3 cannot reach a
permutation p below 0.05). Variance components: analysis.power.Components() (the defaults;
their noise parts checked against published seed variability, see its comment).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from analysis.power import (
    Components,
    Design,
    detectable_slope,
    null_studies,
    power_curve,
    rejection_rate,
)
from sweep.config import load_config
from sweep.plan_report import design_of

DEMO_TARGETS = {"nli": 4, "pos": 4}


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    designs = {
        "xtreme_r.yaml as planned": design_of(load_config("configs/xtreme_r.yaml")),
        "demo targets, 6 intermediates": Design(6, 2, DEMO_TARGETS),
    }
    components = Components()
    print(f"{reps} simulated studies per estimate; alpha 0.05, two-sided t-test")
    print(f"{'design':<32}{'slope':>8}{'predicted':>11}{'simulated':>11}{'diff/SE':>9}")
    for name, design in designs.items():
        start = time.perf_counter()
        slope_80 = detectable_slope(design, components, reps=reps, seed=0).slope_80
        est, se, df = null_studies(design, components, reps, seed=0)
        for k, factor in enumerate((0.5, 1.0, 1.5)):
            slope = factor * slope_80
            predicted = float(power_curve(est, se, df, np.array([slope]))[0])
            simulated = rejection_rate(design, components, slope, reps, seed=1000 + k)
            pooled = np.sqrt(max(predicted * (1 - predicted), 1e-9) * 2 / reps)
            print(
                f"{name:<32}{slope:>8.2f}{predicted:>11.3f}{simulated:>11.3f}"
                f"{(simulated - predicted) / pooled:>9.2f}"
            )
        print(f"  {design.label}; {time.perf_counter() - start:.0f} s")
    print("target: |diff/SE| < 3 at every slope (two independent estimates of one power)")


if __name__ == "__main__":
    main()

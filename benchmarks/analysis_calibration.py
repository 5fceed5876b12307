"""Calibration of the headline two-stage test by simulation, with 10% of (intermediate, seed,
target) trials missing: coverage of the planted slope by the 95% CI, type-I error at a zero
slope (t-test and permutation test), and power at the planted slope; then the mixed model's
Satterthwaite test on the demo design.

Designs: the demo's targets and languages (nli, pos x 4 zero-shot languages, 2 seeds) with 6
intermediates (the demo itself has 2, which cannot be tested), and the real study: 13
intermediates x 10 seeds x the 10 XTREME-R targets x their zero-shot languages.

Run: .venv/bin/python benchmarks/analysis_calibration.py [REPS] [MIXED_REPS]
"""

import sys
import time

import numpy as np

from analysis.mixed import MAIN, fit_lmm
from analysis.models import two_stage
from analysis.simulate import DEMO_LANGUAGES, XTREME_R_LANGUAGES, simulate_gains

SLOPE = 6.0  # points per unit difficulty; intermediate SD 1, residual SD 1
DESIGNS = {
    "demo (6 int x 2 seeds x nli,pos x 4 lang)": (6, 2, DEMO_LANGUAGES),
    "real (13 int x 10 seeds x 10 XTREME-R targets)": (13, 10, XTREME_R_LANGUAGES),
}


def headline(reps: int) -> None:
    for name, (n_int, n_seed, languages) in DESIGNS.items():
        start = time.perf_counter()
        rng = np.random.default_rng(2024)
        covered = power = type1_t = type1_perm = 0
        rows = 0
        for _ in range(reps):
            null = two_stage(
                simulate_gains(rng, 0.0, n_int, n_seed, languages, missing=0.1), n_draws=2000
            )
            type1_t += null.p_t < 0.05
            type1_perm += null.p_perm < 0.05
            planted_gains = simulate_gains(rng, SLOPE, n_int, n_seed, languages, missing=0.1)
            rows += len(planted_gains)
            planted = two_stage(planted_gains, n_draws=0)
            covered += planted.ci_low <= SLOPE <= planted.ci_high
            power += planted.p_t < 0.05
        print(
            f"{name}: {reps} reps, {rows / reps:.0f} rows per draw, "
            f"{time.perf_counter() - start:.0f} s"
        )
        print(f"  coverage of planted slope {SLOPE} by 95% CI: {covered / reps:.3f}")
        print(
            f"  type-I error at 5%: t-test {type1_t / reps:.3f}, "
            f"permutation {type1_perm / reps:.3f}"
        )
        print(f"  power at slope {SLOPE}: {power / reps:.3f}")


def mixed(reps: int) -> None:
    n_int, n_seed, languages = DESIGNS["demo (6 int x 2 seeds x nli,pos x 4 lang)"]
    rng = np.random.default_rng(7)
    start = time.perf_counter()
    rejected = failed = 0
    dfs = []
    for _ in range(reps):
        gains = simulate_gains(rng, 0.0, n_int, n_seed, languages, missing=0.1)
        fit = fit_lmm(gains, MAIN, optimizers=())  # exact-likelihood optimizers only
        if not fit.ok:
            failed += 1
            continue
        rejected += fit.term("difficulty", "p") < 0.05
        dfs.append(fit.term("difficulty", "df"))
    fitted = reps - failed
    print(
        f"mixed model, demo design, zero slope: {reps} reps ({failed} failed), "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(
        f"  Satterthwaite type-I error at 5%: {rejected / max(fitted, 1):.3f}; "
        f"median df {np.median(dfs):.2f} (I - 2 = {n_int - 2})"
    )


if __name__ == "__main__":
    headline(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
    mixed(int(sys.argv[2]) if len(sys.argv) > 2 else 200)

"""Headline analysis (two-stage, 10k permutations, rank correlations) and the full mixed model
on a simulated study of the real size: 13 intermediates x 10 seeds x 10 targets x 38 zero-shot
languages (49,400 gain rows). Targets: under 5 s and under 60 s.

Run: .venv/bin/python benchmarks/analysis_speed.py
"""

import time

import numpy as np

from analysis.mixed import MAIN, fit_lmm
from analysis.models import correlations, two_stage
from analysis.simulate import simulate_gains


def main() -> None:
    rng = np.random.default_rng(0)
    gains = simulate_gains(rng, 5.0, 13, 10, {f"target{k}": 38 for k in range(10)})
    start = time.perf_counter()
    ts = two_stage(gains, n_draws=10_000)
    corr = correlations(gains)
    headline = time.perf_counter() - start
    start = time.perf_counter()
    fit = fit_lmm(gains, MAIN)
    mixed = time.perf_counter() - start
    print(f"rows: {len(gains)}")
    print(
        f"two-stage: slope {ts.estimate:.3f} (SE {ts.se:.3f}), p_perm {ts.p_perm:.4f} "
        f"from {ts.n_perm} draws; Spearman {corr.spearman:.3f}"
    )
    print(
        f"mixed model: slope {fit.term('difficulty', 'estimate'):.3f} "
        f"(SE {fit.term('difficulty', 'se'):.3f}, Satterthwaite df "
        f"{fit.term('difficulty', 'df'):.2f}); kept {fit.method}; ok {fit.ok}"
    )
    print("optimizers (REML llf): " + ", ".join(f"{k} {v:.4f}" for k, v in fit.attempts.items()))
    print(
        f"headline analysis (10k permutations): {headline:.2f} s (target < 5 s, "
        f"{headline / 5:.2f} of it)"
    )
    print(
        f"full mixed model (REML + Satterthwaite + ML): {mixed:.1f} s (target < 60 s, "
        f"{mixed / 60:.2f} of it)"
    )


if __name__ == "__main__":
    main()

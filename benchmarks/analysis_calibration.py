"""Calibration, by simulation, of every test and interval the report shows.

Per design: the type-I error at 5% under a zero slope (with a 95% Clopper-Pearson interval over
the simulated studies) and the coverage of a planted slope by each 95% CI, for
  - the headline two-stage test (t-test and CI, permutation test),
  - the rank correlations (Spearman permutation test over intermediates; no interval shown),
  - the headline within one target (the per-target table; its first target),
  - the mixed models: the Answer's random-slope model and the main (covariate-adjusted) one,
    on the designs marked with mixed reps (slower: the exact engine, the default backend).
The similarity two-stage test is the headline's machinery on another covariate (not simulated).

Designs (gain SDs in points: target 1, language 1, intermediate 1, intermediate:seed 0.5,
seed 0.5, residual 1; 10% of (intermediate, seed, target) trials missing unless said):
  demo6        6 intermediates x 2 seeds x the demo's targets (nli, pos x 4 languages)
  demo4        4 intermediates x 3 seeds, same targets
  real         13 intermediates x 10 seeds x the 10 XTREME-R targets x their zero-shot
               languages, counted from the task registry (trainers.tasks)
  slopes3      real, 3 seeds, the slope varying by target with SD 3 (targets as a sample)
  seedluck     6 intermediates x 3 seeds, difficulty noise SD 0.05 correlated 0.7 with the
               seed's own gain (a lucky seed scores better and gains more)
  informative  real, 3 seeds, the trials of two higher-gain targets (+3 points) missing with
               probability up to 0.6 rising with the intermediate's difficulty

Run: nice -n 10 .venv/bin/python benchmarks/analysis_calibration.py [REPS] [MIXED_REPS] [DESIGNS]
(DESIGNS: comma-separated names, in the order to run; all by default)
"""

import math
import sys
import time

import numpy as np
from scipy import stats

from analysis.mixed import MAIN, SLOPES, fit_lmm
from analysis.models import correlations, two_stage
from analysis.simulate import DEMO_ZERO_SHOT, XTREME_R_ZERO_SHOT, simulate_gains

SLOPE = 6.0  # planted points per unit difficulty
BASE = {"missing": 0.1}
SEED_LUCK = {**BASE, "difficulty_noise": 0.05, "seed_quality": 0.7}
DESIGNS: dict[str, tuple[int, int, dict[str, int], dict, float]] = {
    # name: (intermediates, seeds, languages, simulate_gains options, share of MIXED_REPS)
    "demo6": (6, 2, DEMO_ZERO_SHOT, BASE, 1.0),
    "demo4": (4, 3, DEMO_ZERO_SHOT, BASE, 1.0),
    "real": (13, 10, XTREME_R_ZERO_SHOT, BASE, 0.0),
    "slopes3": (13, 3, XTREME_R_ZERO_SHOT, {**BASE, "sd_slope_target": 3.0}, 0.4),
    "seedluck": (6, 3, DEMO_ZERO_SHOT, SEED_LUCK, 1.0),
    "informative": (13, 3, XTREME_R_ZERO_SHOT, {"informative_missing": 0.6}, 0.5),
}


def rate(hits: int, n: int) -> str:
    """'0.052 [0.034, 0.076]': the share and its 95% Clopper-Pearson interval."""
    if n == 0:
        return "n/a (no usable studies)"
    ci = stats.binomtest(hits, n).proportion_ci(method="exact")
    return f"{hits / n:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def headline(name: str, reps: int) -> None:
    n_int, n_seed, languages, options, _ = DESIGNS[name]
    if reps == 0:  # mixed models only
        print(f"{name}:")
        return
    rng = np.random.default_rng(2024)
    counts = dict.fromkeys(
        ["t", "perm", "spearman", "cover", "fixed_cover", "target_t", "target_cover", "power"], 0
    )
    estimates, rows, start = [], 0, time.perf_counter()
    first = next(iter(languages))
    for _ in range(reps):
        null = simulate_gains(rng, 0.0, n_int, n_seed, languages, **options)
        ts = two_stage(null, n_draws=2000)
        counts["t"] += ts.p_t < 0.05
        counts["perm"] += ts.p_perm < 0.05
        counts["spearman"] += correlations(null, n_draws=2000).spearman_p < 0.05
        estimates.append(ts.estimate)
        counts["target_t"] += two_stage(null[null["target_task"] == first], n_draws=0).p_t < 0.05
        planted = simulate_gains(rng, SLOPE, n_int, n_seed, languages, **options)
        rows += len(planted)
        fit = two_stage(planted, n_draws=0)
        counts["cover"] += fit.ci_low <= SLOPE <= fit.ci_high
        # the headline's estimand: these targets' own slopes, each target weighted equally
        fixed = float(np.mean(list(planted.attrs["target_slopes"].values())))
        counts["fixed_cover"] += fit.ci_low <= fixed <= fit.ci_high
        counts["power"] += fit.p_t < 0.05
        one = two_stage(planted[planted["target_task"] == first], n_draws=0)
        counts["target_cover"] += one.ci_low <= SLOPE <= one.ci_high
    print(
        f"{name}: {reps} studies per arm, {rows / reps:.0f} rows each, "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(
        f"  headline two-stage: type-I t {rate(counts['t'], reps)}, "
        f"permutation {rate(counts['perm'], reps)}; coverage of {SLOPE} by 95% CI "
        f"{rate(counts['cover'], reps)}; power {counts['power'] / reps:.3f}; "
        f"mean null estimate {np.mean(estimates):+.2f} (SD {np.std(estimates):.2f})"
    )
    print(
        "  coverage of the headline's estimand (mean of these targets' slopes): "
        f"{rate(counts['fixed_cover'], reps)}"
    )
    print(f"  Spearman permutation over intermediates: type-I {rate(counts['spearman'], reps)}")
    varies = "sd_slope_target" in options  # then a target's own slope is not the null's 0
    print(
        f"  two-stage within {first}: type-I {rate(counts['target_t'], reps)}, "
        f"coverage {rate(counts['target_cover'], reps)}"
        + ("  (its own slope varies: neither is a null or the planted slope)" if varies else "")
    )


def mixed(name: str, reps: int) -> None:
    n_int, n_seed, languages, options, share = DESIGNS[name]
    reps = round(reps * share)
    if reps == 0:
        return
    rng = np.random.default_rng(7)
    start = time.perf_counter()
    # with slopes varying by target only the random-slope model targets the population slope
    for spec in (SLOPES,) if "sd_slope_target" in options else (SLOPES, MAIN):
        arms = {arm: {"n": 0, "hits": 0, "failed": 0, "singular": 0} for arm in ("null", "slope")}
        dfs = []
        for k in range(2 * reps):
            arm = "null" if k % 2 == 0 else "slope"
            slope = 0.0 if arm == "null" else SLOPE
            gains = simulate_gains(rng, slope, n_int, n_seed, languages, **options)
            fit = fit_lmm(gains, spec)  # the exact engine (the default backend)
            count = arms[arm]
            if not fit.ok:
                count["failed"] += 1
                continue
            if spec is SLOPES and fit.singular_intermediate:
                count["singular"] += 1  # the report keeps these out of the Answer
                continue
            count["n"] += 1
            if arm == "null":
                count["hits"] += fit.term("difficulty", "p") < 0.05
                dfs.append(fit.term("difficulty", "df"))
            else:
                low, high = fit.term("difficulty", "ci_low"), fit.term("difficulty", "ci_high")
                count["hits"] += low <= SLOPE <= high
        null, planted = arms["null"], arms["slope"]
        label = "random slope (Answer)" if spec is SLOPES else "main (adjusted)"
        print(
            f"  mixed {label}: type-I {rate(null['hits'], null['n'])}, coverage "
            f"{rate(planted['hits'], planted['n'])}; median df "
            f"{np.median(dfs) if dfs else math.nan:.2f}; failed {null['failed']}+"
            f"{planted['failed']}, singular (not quoted) {null['singular']}+{planted['singular']}"
        )
    print(f"  ({reps} studies per arm and model, {time.perf_counter() - start:.0f} s)")


def main(reps: int, mixed_reps: int, names: list[str]) -> None:
    for name in names:
        headline(name, reps)
        mixed(name, mixed_reps)


if __name__ == "__main__":
    chosen = sys.argv[3].split(",") if len(sys.argv) > 3 else list(DESIGNS)
    unknown = [n for n in chosen if n not in DESIGNS]
    if unknown:
        sys.exit(f"unknown design {unknown[0]!r}; known: {', '.join(DESIGNS)}")
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 500,
        int(sys.argv[2]) if len(sys.argv) > 2 else 100,
        chosen,
    )

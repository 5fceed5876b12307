"""Power of the headline two-stage test for a planned design, by simulation with this package's
own simulator (`analysis.simulate.simulate_gains`) and test (`analysis.models.two_stage`).

The smallest detectable slope (gain points per unit of difficulty, 80% power, two-sided alpha
0.05 by default) comes from studies simulated at slope 0: a planted slope b adds b x measured
difficulty to every gain, so the two-stage OLS slope becomes estimate + b while its standard
error and df stay the same (the residuals do not change). One simulated study therefore gives
its t-test decision at every slope, and the power curve is exact for the simulated studies.
`benchmarks/power_check.py` compares it with the rejection rate of studies simulated at each
slope directly.

Difficulty is the simulator's: intermediates spread evenly over 0.1-0.8, measured per seed
with noise. The permutation test's floor: with I intermediates no ordering gives a two-sided
exact p below 2 / I! (the observed ordering and its reverse), so I = 3 cannot reach 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from analysis.models import EXACT_MAX, two_stage
from analysis.simulate import simulate_gains

POWER = 0.8
ALPHA = 0.05


@dataclass(frozen=True)
class Components:
    """Standard deviations of the gain's parts, in points (simulate_gains' parameters)."""

    target: float = 1.0
    language: float = 1.0
    intermediate: float = 1.0
    intermediate_seed: float = 0.5
    seed: float = 0.5
    residual: float = 1.0
    # The noise parts against published seed variability: XLM-R base fine-tuned on English
    # SQuAD with 5 seeds, zero-shot XQuAD F1 (stefan-it/xlm-v-experiments, file
    # xquad_zero_shot_xlm_r_results.md at ced2c0b): per language SD 0.39-1.08 (mean 0.65),
    # 0.68 after each seed's shift, 0.21 on the 10-language average. A gain is the difference
    # of two fine-tunes: residual sqrt(2) x 0.68 = 0.96 (here 1.0); shared shift sqrt(2) x 0.21
    # = 0.30 (here intermediate:seed 0.5 and seed 0.5: conservative). The target, language and
    # intermediate parts are effects, not noise: no published figure; assumed.
    source: str = (
        "residual and seed parts from published seed variability (XLM-R base, zero-shot XQuAD "
        "F1 over 5 seeds, stefan-it/xlm-v-experiments: gain residual 0.96, shared shift 0.30; "
        "the seed parts here are larger); target, language and intermediate parts assumed "
        "(estimate all from a pilot run with --pilot)"
    )

    def kwargs(self) -> dict[str, float]:
        return {
            "sd_target": self.target,
            "sd_language": self.language,
            "sd_intermediate": self.intermediate,
            "sd_intermediate_seed": self.intermediate_seed,
            "sd_seed": self.seed,
            "sd_residual": self.residual,
        }


@dataclass(frozen=True)
class Design:
    """What decides the test's power: intermediates, seeds, and zero-shot languages per target."""

    intermediates: int
    seeds: int
    languages: Mapping[str, int]  # target -> zero-shot languages

    @property
    def label(self) -> str:
        cells = sum(self.languages.values())
        return (
            f"{self.intermediates} intermediates x {self.seeds} seeds x {len(self.languages)} "
            f"targets ({cells} target-language cells)"
        )


@dataclass
class PowerResult:
    design: Design
    slope_80: float  # smallest slope with power >= POWER (nan: not reached below the cap)
    reps: int
    alpha: float
    power_at: dict[float, float] = field(default_factory=dict)  # slope -> t-test power
    permutation_power: float = math.nan  # at slope_80
    permutation_reps: int = 0  # studies behind permutation_power
    permutation_floor: float = 0.0  # smallest exact permutation p (0: random draws)
    note: str = ""


def null_studies(
    design: Design, components: Components, reps: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, se, df) of the two-stage test over `reps` studies simulated at slope 0."""
    rng = np.random.default_rng(seed)
    est, se, df = np.empty(reps), np.empty(reps), np.empty(reps)
    for r in range(reps):
        gains = simulate_gains(
            rng, 0.0, design.intermediates, design.seeds, dict(design.languages),
            **components.kwargs(),
        )  # fmt: skip
        ts = two_stage(_cell_means(gains), n_draws=0)
        est[r], se[r], df[r] = ts.estimate, ts.se, ts.df
    return est, se, df


def _cell_means(gains: pd.DataFrame) -> pd.DataFrame:
    """One row per (intermediate, target, seed): the two-stage test's input reduced without
    change (it averages languages within each target first; difficulty is one value per
    intermediate and seed)."""
    keys = ["intermediate", "target_task", "seed"]
    return gains.groupby(keys, as_index=False)[["gain", "difficulty"]].mean()


def power_curve(
    est: np.ndarray, se: np.ndarray, df: np.ndarray, slopes: np.ndarray, alpha: float = ALPHA
) -> np.ndarray:
    """t-test power at each slope: the share of studies with |estimate + slope| > t* x se."""
    crit = stats.t.ppf(1 - alpha / 2, df) * se
    return (np.abs(est[None, :] + np.asarray(slopes)[:, None]) > crit[None, :]).mean(axis=1)


def detectable_slope(
    design: Design,
    components: Components = Components(),
    reps: int = 200,
    alpha: float = ALPHA,
    power: float = POWER,
    seed: int = 0,
) -> PowerResult:
    """The smallest positive slope the headline test detects with `power` at `alpha`."""
    result = PowerResult(design, math.nan, reps, alpha)
    if design.intermediates < 3:
        result.note = f"cannot be tested: {design.intermediates} intermediates (needs 3)"
        return result
    est, se, df = null_studies(design, components, reps, seed)
    high = float(np.nanmax(se)) * 20 + 1.0
    lo, hi = 0.0, high
    if power_curve(est, se, df, [hi], alpha)[0] < power:
        result.note = "power stays below the target at every slope tried"
        return result
    for _ in range(40):  # bisection on the (monotone in slope > 0 for these studies) curve
        mid = (lo + hi) / 2
        if power_curve(est, se, df, [mid], alpha)[0] >= power:
            hi = mid
        else:
            lo = mid
    result.slope_80 = hi
    for k in (0.5, 1.0, 1.5):
        result.power_at[k * hi] = float(power_curve(est, se, df, [k * hi], alpha)[0])
    n = design.intermediates
    if n <= EXACT_MAX:
        # the observed ordering alone can be the most extreme one (a reversal does not negate a
        # slope in general), so 1/n! is the floor; analysis.models.permutation_floor computes the
        # floor of a given data set, which ties can raise
        result.permutation_floor = 1 / math.factorial(n)
    if result.permutation_floor > alpha:
        result.note = (
            f"the exact permutation test cannot reach p < {alpha:g} with {n} intermediates "
            f"(smallest possible p = 1/{n}! = {result.permutation_floor:.3f})"
        )
        result.permutation_power = 0.0
    else:
        result.permutation_reps = max(20, reps // 4)
        result.permutation_power = permutation_power(
            design, components, hi, result.permutation_reps, alpha, seed + 1
        )
    return result


def permutation_power(
    design: Design,
    components: Components,
    slope: float,
    reps: int,
    alpha: float = ALPHA,
    seed: int = 1,
    n_draws: int = 999,
) -> float:
    """Rejection rate of the permutation test over studies simulated at `slope`."""
    studies = _studies(design, components, slope, reps, seed)
    return sum(two_stage(_cell_means(g), n_draws=n_draws).p_perm < alpha for g in studies) / reps


def rejection_rate(
    design: Design,
    components: Components,
    slope: float,
    reps: int,
    alpha: float = ALPHA,
    seed: int = 12345,
) -> float:
    """t-test rejection rate of studies simulated at `slope` directly, full rows (the check)."""
    studies = _studies(design, components, slope, reps, seed)
    return sum(two_stage(gains, n_draws=0).p_t < alpha for gains in studies) / reps


def _studies(
    design: Design, components: Components, slope: float, reps: int, seed: int
) -> Iterator[pd.DataFrame]:
    """`reps` studies of `design` simulated at `slope`, one generator seeded once."""
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        yield simulate_gains(
            rng, slope, design.intermediates, design.seeds, dict(design.languages),
            **components.kwargs(),
        )  # fmt: skip


def alternatives(design: Design) -> list[Design]:
    """The planned design and what would buy power: twice the intermediates, 10 seeds."""
    more = [replace(design, intermediates=2 * design.intermediates)]
    if design.seeds < 10:
        more.append(replace(design, seeds=10))
    return [design, *more]


def components_from_run(run: str) -> Components:
    """Variance components estimated from a pilot run's gains by the full mixed model (REML,
    exact engine); raises ValueError when the run cannot give them."""
    from analysis.gains import gain_table
    from analysis.mixed import MAIN, fit_lmm
    from analysis.results import load_run

    loaded = load_run(run)
    gains = gain_table(loaded.rows).dropna(subset=["gain", "difficulty"])
    if gains.empty:
        raise ValueError(f"{run}: no paired gains with a difficulty; run a pilot sweep first")
    fit = fit_lmm(gains, MAIN)
    if not fit.ok:
        raise ValueError(f"{run}: the mixed model did not fit ({fit.reason})")
    sd = fit.variance["sd"]

    def get(name: str) -> float:
        return float(sd.get(name, 0.0))

    return Components(
        target=get("target_task"),
        language=get("language"),
        intermediate=get("intermediate"),
        intermediate_seed=get("intermediate:seed"),
        seed=get("seed"),
        residual=get("residual"),
        source=f"estimated from the pilot run {run} (REML, {fit.n_obs} gains)",
    )

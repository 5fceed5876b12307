"""Does difficulty predict gain? The two-stage test (the headline) and rank correlations; the
full mixed model is in analysis.mixed.

Difficulty varies only between intermediates (seeds measure it with noise), so the honest unit
of replication is the intermediate: the two-stage test regresses one mean gain per intermediate
on its mean difficulty, with I - 2 degrees of freedom.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

log = logging.getLogger(__name__)

EXACT_MAX = 8  # 8! = 40,320 orderings is still instant; beyond that, seeded random draws
N_DRAWS = 10_000
NEEDS_THREE = "needs at least 3 intermediates"


def _usable(gains: pd.DataFrame, covariate: str = "difficulty") -> pd.DataFrame:
    return gains.dropna(subset=["gain", covariate])


def intermediate_means(gains: pd.DataFrame, covariate: str = "difficulty") -> pd.DataFrame:
    """Per intermediate: mean difficulty over seeds, mean gain over all its rows, counts.

    `covariate` names another column to average in difficulty's place (e.g. "similarity": the
    mean over the intermediate's rows, per seed and then over seeds); the column keeps its name.
    """
    usable = _usable(gains, covariate)
    if usable.empty:
        return pd.DataFrame(
            {"intermediate": [], covariate: [], "gain": [], "n_seeds": [], "n": []}
        ).astype({"n_seeds": np.int64, "n": np.int64})
    per_seed = usable.groupby(["intermediate", "seed"], as_index=False)[covariate].mean()
    difficulty = per_seed.groupby("intermediate").agg(
        **{covariate: (covariate, "mean")}, n_seeds=("seed", "nunique")
    )
    gain = usable.groupby("intermediate").agg(gain=("gain", "mean"), n=("gain", "size"))
    table = difficulty.join(gain).reset_index()
    return table.sort_values([covariate, "intermediate"], ignore_index=True)[
        ["intermediate", covariate, "gain", "n_seeds", "n"]
    ]


@dataclass
class TwoStage:
    """OLS of mean gain per intermediate on mean difficulty; gain points per unit difficulty.

    `p_t` is the t-test on I - 2 df; `p_perm` the two-sided permutation p of difficulty across
    intermediates (exact over all I! orderings when `exact`, else from `n_perm` seeded draws).
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    t: float
    df: int
    p_t: float
    p_perm: float
    n_perm: int
    exact: bool
    intercept: float
    n_intermediates: int
    means: pd.DataFrame
    note: str | None = None


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Slope, intercept, slope SE, residual df; SE is NaN without residual df or x variation."""
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx <= 0:
        return math.nan, math.nan, math.nan, len(x) - 2
    slope = float(dx @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    df = len(x) - 2
    if df < 1:
        return slope, intercept, math.nan, df
    resid = y - intercept - slope * x
    return slope, intercept, math.sqrt(float(resid @ resid) / df / sxx), df


def permutation_p(
    x: np.ndarray, y: np.ndarray, n_draws: int = N_DRAWS, seed: int = 0
) -> tuple[float, int, bool]:
    """Two-sided permutation p of the OLS slope of y on x, shuffling x: (p, orderings, exact).

    Counts orderings whose |slope| is at least the observed one, the observed ordering included:
    exact over all n! orderings when n <= EXACT_MAX, else (1 + hits) / (1 + n_draws).
    """
    n = len(x)
    dx, dy = x - x.mean(), y - y.mean()
    # Sxx is the same under every ordering, so |sum dx*dy| orders orderings as |slope| does.
    observed = abs(float(dx @ dy))
    # Float noise must not split ties (a reversed ordering has exactly the observed |slope|);
    # |dx|*|dy| bounds every ordering's statistic, so this tolerance is relative to their scale.
    tolerance = 1e-9 * float(np.linalg.norm(dx) * np.linalg.norm(dy))
    if n <= EXACT_MAX:
        orders = np.array(list(itertools.permutations(range(n))), dtype=np.intp)
        hits = int((np.abs(dx[orders] @ dy) >= observed - tolerance).sum())
        return hits / len(orders), len(orders), True
    rng = np.random.default_rng(seed)
    orders = rng.permuted(np.tile(np.arange(n), (n_draws, 1)), axis=1)
    hits = int((np.abs(dx[orders] @ dy) >= observed - tolerance).sum())
    return (1 + hits) / (1 + n_draws), n_draws, False


def two_stage(
    gains: pd.DataFrame, n_draws: int = N_DRAWS, seed: int = 0, covariate: str = "difficulty"
) -> TwoStage:
    """The headline test: mean gain per intermediate regressed on mean difficulty.

    Rows with NaN gain or difficulty are dropped. With fewer than 3 intermediates the slope (if
    any) is returned with NaN SE and p-values and `note` says why. `covariate` regresses on
    another per-row column instead (a competing explanation, e.g. "similarity").
    """
    means = intermediate_means(gains, covariate)
    x, y = means[covariate].to_numpy(float), means["gain"].to_numpy(float)
    n = len(means)
    slope, intercept, se, df = _ols(x, y) if n >= 2 else (math.nan, math.nan, math.nan, n - 2)
    result = TwoStage(
        estimate=slope,
        se=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        t=math.nan,
        df=max(df, 0),
        p_t=math.nan,
        p_perm=math.nan,
        n_perm=0,
        exact=False,
        intercept=intercept,
        n_intermediates=n,
        means=means,
    )
    if n < 3:
        result.note = f"{NEEDS_THREE} (found {n})"
        return result
    if math.isnan(slope):
        result.note = f"{covariate} does not vary across intermediates"
        return result
    result.se = se
    if se > 0:
        result.t = slope / se
        result.p_t = float(2 * stats.t.sf(abs(result.t), df))
    else:  # a perfect fit: the slope is known exactly given this model
        result.t = math.copysign(math.inf, slope) if slope else math.nan
        result.p_t = 0.0 if slope else 1.0
    half = float(stats.t.ppf(0.975, df)) * se
    result.ci_low, result.ci_high = slope - half, slope + half
    result.p_perm, result.n_perm, result.exact = permutation_p(x, y, n_draws, seed)
    return result


def two_stage_by_target(
    gains: pd.DataFrame, n_draws: int = N_DRAWS, seed: int = 0, covariate: str = "difficulty"
) -> pd.DataFrame:
    """The headline test within each target task: one row per target (NaN where untestable)."""
    rows = []
    for target, part in gains.groupby("target_task", sort=True):
        ts = two_stage(part, n_draws, seed, covariate)
        rows.append(
            {
                "target_task": target,
                "intermediates": ts.n_intermediates,
                "slope": ts.estimate,
                "se": ts.se,
                "ci_low": ts.ci_low,
                "ci_high": ts.ci_high,
                "df": ts.df,
                "p_t": ts.p_t,
                "p_perm": ts.p_perm,
            }
        )
    return pd.DataFrame(rows)


@dataclass
class Correlations:
    """Spearman and Kendall between mean difficulty and mean gain across intermediates, with
    95% percentile CIs from resampling seeds with replacement (`n_boot` = usable draws; a draw
    that leaves some intermediate without any of its seeds is discarded)."""

    spearman: float
    spearman_ci: tuple[float, float]
    kendall: float
    kendall_ci: tuple[float, float]
    n_intermediates: int
    n_seeds: int
    n_boot: int
    note: str | None = None


def _rank_corr(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman rho and Kendall tau-b of each column pair of (I, B) arrays, vectorized.

    A column with a NaN, fewer than 3 rows or no variation in x or y gives NaN.
    """
    n = x.shape[0]
    bad = np.isnan(x).any(axis=0) | np.isnan(y).any(axis=0)
    if n < 3:
        return np.full(x.shape[1], math.nan), np.full(x.shape[1], math.nan)
    rx = stats.rankdata(np.nan_to_num(x), axis=0)
    ry = stats.rankdata(np.nan_to_num(y), axis=0)
    rx, ry = rx - rx.mean(axis=0), ry - ry.mean(axis=0)
    i, j = np.triu_indices(n, k=1)
    # Over pairs, sum(sx*sy) / sqrt(sum sx^2 * sum sy^2) is tau-b, ties included.
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=0) / np.sqrt((rx**2).sum(axis=0) * (ry**2).sum(axis=0))
        tau = (sx * sy).sum(axis=0) / np.sqrt((sx**2).sum(axis=0) * (sy**2).sum(axis=0))
    flat = (np.ptp(np.nan_to_num(x), axis=0) == 0) | (np.ptp(np.nan_to_num(y), axis=0) == 0)
    rho[bad | flat] = math.nan
    tau[bad | flat] = math.nan
    return rho, tau


def correlations(gains: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> Correlations:
    """Rank correlations of difficulty with gain, bootstrapping seeds; NaN with a note when
    there are fewer than 3 intermediates (CIs also NaN with fewer than 2 seeds)."""
    usable = _usable(gains)
    means = intermediate_means(usable)
    n_int, n_seeds = len(means), int(usable["seed"].nunique())
    nan_ci = (math.nan, math.nan)
    if n_int < 3:
        return Correlations(
            math.nan, nan_ci, math.nan, nan_ci, n_int, n_seeds, 0, f"{NEEDS_THREE} (found {n_int})"
        )
    rho, tau = _rank_corr(means[["difficulty"]].to_numpy(float), means[["gain"]].to_numpy(float))
    result = Correlations(float(rho[0]), nan_ci, float(tau[0]), nan_ci, n_int, n_seeds, 0)
    if n_seeds < 2:
        result.note = "one seed: no bootstrap interval"
        return result
    # Per (intermediate, seed) sums and counts: a resample of seeds is a weight vector on these,
    # the same as concatenating the drawn seeds' rows.
    cells = usable.groupby(["intermediate", "seed"]).agg(
        total=("gain", "sum"), count=("gain", "size"), difficulty=("difficulty", "mean")
    )
    total = cells["total"].unstack(fill_value=0.0).reindex(means["intermediate"])
    count = cells["count"].unstack(fill_value=0).reindex(means["intermediate"])
    diff = cells["difficulty"].unstack().reindex(means["intermediate"])
    present = diff.notna().to_numpy(float)
    diff0 = diff.fillna(0.0).to_numpy(float)
    total_np, count_np = total.to_numpy(float), count.to_numpy(float)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot_gain = (total_np @ weights.T) / (count_np @ weights.T)
        boot_diff = (diff0 @ weights.T) / (present @ weights.T)
    # A draw that misses every seed of some intermediate has a NaN mean there: discarded.
    draws = np.column_stack(_rank_corr(boot_diff, boot_gain))
    draws = draws[~np.isnan(draws).any(axis=1)]
    result.n_boot = len(draws)
    if len(draws):
        lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
        result.spearman_ci = (float(lo[0]), float(hi[0]))
        result.kendall_ci = (float(lo[1]), float(hi[1]))
    return result


def measure_correlations(means: pd.DataFrame, measures: list[str]) -> pd.DataFrame:
    """Spearman rho between each pair of `measures` (columns of one row per intermediate),
    over the intermediates where both are known; NaN with a note below 3 or without variation.
    """
    rows = []
    for a, b in itertools.combinations(measures, 2):
        both = means[[a, b]].dropna().to_numpy(float)
        n = len(both)
        rho, note = math.nan, ""
        if n < 3:
            note = f"{NEEDS_THREE} with both (found {n})"
        elif np.ptp(both[:, 0]) == 0 or np.ptp(both[:, 1]) == 0:
            note = "no variation across intermediates"
        else:
            rho = float(_rank_corr(both[:, :1], both[:, 1:])[0][0])
        rows.append({"measure": a, "versus": b, "intermediates": n, "spearman": rho, "note": note})
    return pd.DataFrame(rows, columns=["measure", "versus", "intermediates", "spearman", "note"])

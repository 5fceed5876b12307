"""Does difficulty predict gain? The two-stage test (the headline) and rank correlations; the
full mixed model is in analysis.mixed.

The headline estimand (pre-specified; also in docs/DESIGN.md): the OLS slope of each
intermediate's mean gain on its mean difficulty across the intermediates of this study, where an
intermediate's mean gain weights **each target equally** (languages averaged within a target,
then seeds, then targets; a target missing for some intermediate is filled by a two-way additive
fit, `intermediate_means`), with **no covariates**. It is about these targets (fixed); the mixed
model with a random slope by target (analysis.mixed) answers for targets as a sample.

Difficulty varies only between intermediates (seeds measure it with noise), so the honest unit
of replication is the intermediate: I - 2 degrees of freedom.
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
FLAT = 1e-12  # relative spread below which a covariate counts as constant (float noise)
WEIGHTS = (
    "each target weighted equally (languages averaged within target, then seeds, then targets)"
)


def _usable(gains: pd.DataFrame, covariate: str = "difficulty") -> pd.DataFrame:
    return gains.dropna(subset=["gain", covariate])


def _additive_row_means(cells: pd.DataFrame) -> pd.Series:
    """Per intermediate: its mean over every target of `cells` (intermediate x target means),
    the missing ones filled by the least-squares fit gain = intermediate + target.

    On a complete grid this is the plain row mean; with holes it keeps an intermediate that
    lacks a high-gain target from looking worse (the target effect is estimated from the other
    intermediates). An intermediate whose targets connect to no other is left at its row mean.
    """
    grid = cells.unstack("target_task")
    if not grid.isna().to_numpy().any():
        return grid.mean(axis=1)
    names, targets = list(grid.index), list(grid.columns)
    i_idx, t_idx = np.nonzero(grid.notna().to_numpy())
    y = grid.to_numpy(float)[i_idx, t_idx]
    X = np.zeros((len(y), len(names) + len(targets)))
    X[np.arange(len(y)), i_idx] = 1.0
    X[np.arange(len(y)), len(names) + t_idx] = 1.0
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)  # minimum-norm: the split is not unique
    filled = coef[: len(names), None] + coef[None, len(names) :]
    full = np.where(grid.notna().to_numpy(), grid.to_numpy(float), filled)
    return pd.Series(full.mean(axis=1), index=grid.index)


def intermediate_means(gains: pd.DataFrame, covariate: str = "difficulty") -> pd.DataFrame:
    """Per intermediate: mean difficulty over seeds and mean gain with the headline's weights
    (WEIGHTS: languages within target, then seeds, then targets equally), with counts.

    `covariate` names another column to average in difficulty's place (e.g. "similarity": the
    same weights as the gain); the column keeps its name.
    """
    usable = _usable(gains, covariate)
    columns = ["intermediate", covariate, "gain", "n_seeds", "n_targets", "n"]
    if usable.empty:
        return pd.DataFrame({c: [] for c in columns}).astype(
            {"n_seeds": np.int64, "n_targets": np.int64, "n": np.int64}
        )
    keys = ["intermediate", "target_task", "seed"]
    per_seed = usable.groupby(keys)[["gain", covariate]].mean()  # languages within target
    per_target = per_seed.groupby(["intermediate", "target_task"]).mean()  # then seeds
    table = pd.DataFrame(
        {
            "gain": _additive_row_means(per_target["gain"]),
            covariate: (
                usable.groupby(["intermediate", "seed"])[covariate].mean().groupby(level=0).mean()
                if covariate == "difficulty"
                else per_target[covariate].groupby(level=0).mean()
            ),
            "n_seeds": usable.groupby("intermediate")["seed"].nunique(),
            "n_targets": usable.groupby("intermediate")["target_task"].nunique(),
            "n": usable.groupby("intermediate").size(),
        }
    )
    table = table.rename_axis("intermediate").reset_index()
    return table.sort_values([covariate, "intermediate"], ignore_index=True)[columns]


@dataclass
class TwoStage:
    """OLS of mean gain per intermediate on mean difficulty; gain points per unit difficulty.

    `p_t` is the t-test on I - 2 df; `p_perm` the two-sided permutation p of difficulty across
    intermediates (exact over all I! orderings when `exact`, else from `n_perm` seeded draws);
    `p_floor` the smallest p any ordering of these data could give (computed, not assumed).
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
    p_floor: float = math.nan


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Slope, intercept, slope SE, residual df; SE is NaN without residual df or x variation."""
    dx = x - x.mean()
    sxx = float(dx @ dx)
    # Equal values leave float noise (x - mean = -1e-16, sxx = 1e-32): that is no spread at all.
    if sxx <= (FLAT * max(float(np.abs(x).max(initial=0.0)), 1e-300)) ** 2 * len(x):
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


def permutation_floor(x: np.ndarray, y: np.ndarray, n_draws: int = N_DRAWS) -> float:
    """The smallest two-sided permutation p that any ordering of `x` against `y` can give.

    Exact: the share of orderings reaching the largest |slope| over all n! orderings (2/n! when
    only an ordering and its mirror do, 1/n! when the mirror gives a smaller |slope|, more with
    ties); with random draws, 1 / (1 + n_draws).
    """
    n = len(x)
    if n > EXACT_MAX:
        return 1 / (1 + n_draws)
    dx, dy = x - x.mean(), y - y.mean()
    orders = np.array(list(itertools.permutations(range(n))), dtype=np.intp)
    values = np.abs(dx[orders] @ dy)
    tolerance = 1e-9 * float(np.linalg.norm(dx) * np.linalg.norm(dy))
    return float((values >= values.max() - tolerance).sum()) / len(orders)


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
    result.p_floor = permutation_floor(x, y, n_draws)
    return result


def two_stage_by_target(
    gains: pd.DataFrame, n_draws: int = N_DRAWS, seed: int = 0, covariate: str = "difficulty"
) -> pd.DataFrame:
    """The headline test within each target task: one row per target (NaN where untestable,
    `note` saying why, e.g. equal cosines: no spread, no slope)."""
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
                "note": ts.note or "",  # why a number is n/a (degenerate arithmetic is n/a)
            }
        )
    return pd.DataFrame(rows)


@dataclass
class Correlations:
    """Spearman and Kendall between mean difficulty and mean gain across intermediates, each with
    a two-sided permutation p over intermediates (exact over all I! orderings when `exact`, else
    `n_perm` seeded draws). No interval: resampling seeds keeps the intermediates fixed and
    excluded 0 in over half of simulated studies without an effect; intermediates are the unit,
    and a permutation of them is calibrated by construction."""

    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float
    n_intermediates: int
    n_seeds: int
    n_perm: int = 0
    exact: bool = False
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


def correlations(gains: pd.DataFrame, n_draws: int = N_DRAWS, seed: int = 0) -> Correlations:
    """Rank correlations of mean difficulty with mean gain (the headline's means), with
    permutation p-values over intermediates; NaN with a note below 3 intermediates or without
    variation."""
    usable = _usable(gains)
    means = intermediate_means(usable)
    n_int, n_seeds = len(means), int(usable["seed"].nunique())
    if n_int < 3:
        note = f"{NEEDS_THREE} (found {n_int})"
        return Correlations(math.nan, math.nan, math.nan, math.nan, n_int, n_seeds, note=note)
    x, y = means["difficulty"].to_numpy(float), means["gain"].to_numpy(float)
    rho, tau = _rank_corr(x[:, None], y[:, None])
    result = Correlations(float(rho[0]), math.nan, float(tau[0]), math.nan, n_int, n_seeds)
    if math.isnan(result.spearman):
        result.note = "difficulty or gain does not vary across intermediates"
        return result
    if n_int <= EXACT_MAX:
        orders = np.array(list(itertools.permutations(range(n_int))), dtype=np.intp)
        result.exact = True
    else:
        rng = np.random.default_rng(seed)
        orders = rng.permuted(np.tile(np.arange(n_int), (n_draws, 1)), axis=1)
    rho_p, tau_p = _rank_corr(x[orders].T, np.repeat(y[:, None], len(orders), axis=1))
    result.n_perm = len(orders)
    for name, observed, null in (("spearman", rho[0], rho_p), ("kendall", tau[0], tau_p)):
        hits = int((np.abs(null) >= abs(observed) - 1e-12).sum())
        p = hits / len(orders) if result.exact else (1 + hits) / (1 + len(orders))
        setattr(result, f"{name}_p", float(p))
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

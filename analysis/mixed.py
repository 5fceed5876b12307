"""The full linear mixed model of gain on difficulty, with crossed random effects.

`gain ~ difficulty + difficulty_within (+ log_size + format where they vary)`, random
intercepts for target task, language within target, intermediate, intermediate:seed and seed;
REML for estimates, ML for comparisons. `difficulty` is the intermediate's mean over its seeds
(the between-intermediate slope, about I - 2 Satterthwaite df) and `difficulty_within` each
seed's deviation from it (seed-to-seed noise and luck: a lucky seed may score better and gain
more, which must not leak into the between slope), so the two are reported as two terms.

One default path, `backend="exact"`: an exact REML/ML computed from cross-products (`Engine`,
O(q^3) per evaluation for any number of rows), maximized by L-BFGS-B from several starts (as
lme4 users refit) and polished by Powell and Nelder-Mead; the best log-likelihood is kept, and
a lower optimum is reported. The engine also supplies the Hessian of the variance parameters,
Satterthwaite df and BLUPs. Two other backends give the same tables, as cross-checks:
`"statsmodels"` (MixedLM's optimizers, judged on the exact likelihood) and `"lme4"` (lme4 and
lmerTest through Rscript). Every fit is bounded by FIT_SECONDS; a design too small for a model
is refused with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import linalg, sparse, stats

from sweep.config import BACKENDS, Backend  # the one list of backends; "exact" the default

log = logging.getLogger(__name__)

OPTIMIZERS = ("lbfgs", "bfgs", "powell", "nm")  # statsmodels backend
# statsmodels optimizes llf / n, so its gradient shrinks with n: tolerances must be tight.
TOLERANCES = {
    "lbfgs": {"pgtol": 1e-10, "factr": 10.0, "maxiter": 2000},
    "bfgs": {"gtol": 1e-9, "maxiter": 2000},
    "powell": {"xtol": 1e-8, "ftol": 1e-12, "maxiter": 20000},
    "nm": {"xtol": 1e-8, "ftol": 1e-12, "maxiter": 20000},
}
STATSMODELS_MAX_ROWS = 5000  # beyond, one statsmodels fit takes minutes (10+ at 47k rows)
SPARSE_FROM_ROWS = 1500  # dense statsmodels is faster on small tables, 8x slower on large ones
BOUNDARY = 1e-6  # a variance below this share of the total is at the boundary (singular fit)
LLF_AGREEMENT = 1e-3  # statsmodels' llf and the exact one must agree to this many units
# Random-effect components, in the order of the variance table.
COMPONENTS = ("target_task", "language", "intermediate", "intermediate:seed", "seed")
SLOPE = "difficulty|target_task"
FIT_SECONDS = 120.0  # wall-clock budget of one model's REML and ML fits, every optimizer together
# relative SDs (component / residual) the exact optimizers start from, besides the given start
STARTS = (1.0, 0.1, 3.0)


class FitTimeout(Exception):
    """The fit's time budget ran out inside an optimizer."""


@dataclass
class ModelSpec:
    """Which model: fixed-effect terms beyond the intercept, and random components."""

    name: str
    fixed: tuple[str, ...] = ("difficulty",)
    slope: bool = False  # uncorrelated random slope of difficulty by target task
    covariates: bool = True  # add log train size and format where they vary
    # difficulty as the intermediate's mean plus a within term (True), or each row's seed's
    # measured difficulty as one term (False: the older model, e.g. to compare with lme4 runs)
    decompose: bool = True


MAIN = ModelSpec("main")
NULL = ModelSpec("no difficulty", fixed=())
# The Answer's second number: targets as a sample (slope varies by target), and the headline's
# covariates (none), so that it estimates the headline's slope with targets random.
SLOPES = ModelSpec("random slope", slope=True, covariates=False)
OVERLAP = ModelSpec("difficulty x overlap", fixed=("difficulty", "overlap", "difficulty:overlap"))


@dataclass
class LmmFit:
    """One fitted model. `fixed` has estimate, se, df (Satterthwaite), t, p, ci_low, ci_high per
    term; `variance` has variance, sd and share (of the total) per component, residual last."""

    spec: str
    ok: bool
    reason: str | None = None
    backend: Backend = "exact"
    fixed: pd.DataFrame = field(default_factory=pd.DataFrame)
    variance: pd.DataFrame = field(default_factory=pd.DataFrame)
    blups: pd.DataFrame = field(default_factory=pd.DataFrame)  # component, level, value, se
    reml_llf: float = math.nan
    ml_llf: float = math.nan
    n_params: int = 0  # fixed effects + variance parameters (residual included)
    n_obs: int = 0
    levels: dict[str, int] = field(default_factory=dict)
    method: str | None = None
    attempts: dict[str, float] = field(default_factory=dict)  # optimizer -> REML llf or NaN
    warnings: list[str] = field(default_factory=list)

    @property
    def singular_intermediate(self) -> bool:
        """True when the intermediate variance is at ~0: difficulty's df then come from rows,
        not intermediates, and its test is not about the unit that varies in difficulty."""
        if not self.ok or "intermediate" not in self.variance.index:
            return self.ok
        total = float(self.variance["variance"].sum())
        return float(self.variance.loc["intermediate", "variance"]) <= BOUNDARY * total

    def term(self, name: str, column: str) -> float:
        """One number of the fixed-effects table, NaN when absent."""
        if not self.ok or name not in self.fixed.index:
            return math.nan
        return float(self.fixed.loc[name, column])

    @property
    def aic(self) -> float:
        return -2 * self.ml_llf + 2 * self.n_params

    @property
    def bic(self) -> float:
        return -2 * self.ml_llf + math.log(max(self.n_obs, 1)) * self.n_params


# ---- design ----------------------------------------------------------------------------------


@dataclass
class Design:
    """Response, fixed-effect matrix and one sparse indicator block per random component."""

    y: np.ndarray
    X: np.ndarray
    fe_names: list[str]
    blocks: dict[str, sparse.csc_array]
    levels: dict[str, list[str]]
    notes: list[str]


def _indicator(
    codes: np.ndarray, n_levels: int, values: np.ndarray | None = None
) -> sparse.csc_array:
    n = len(codes)
    data = np.ones(n) if values is None else values
    return sparse.csc_array((data, (np.arange(n), codes)), shape=(n, n_levels))


def model_frame(gains: pd.DataFrame) -> pd.DataFrame:
    """The rows a model can use (gain and difficulty known), with the factor columns.

    `difficulty` is the intermediate's mean over its seeds (each seed counted once), and
    `difficulty_within` the row's seed's deviation from that mean.
    """
    usable = gains.dropna(subset=["gain", "difficulty"]).reset_index(drop=True)
    per_seed = usable.groupby(["intermediate", "seed"])["difficulty"].mean()
    measured = usable["difficulty"].to_numpy(float)
    between = usable["intermediate"].map(per_seed.groupby(level=0).mean()).to_numpy(float)
    frame = pd.DataFrame(
        {
            "gain": usable["gain"].to_numpy(float),
            "difficulty": between,
            "difficulty_within": measured - between,
            "difficulty_measured": measured,
            "target_task": usable["target_task"].astype(str).to_numpy(),
            "language": (usable["target_task"] + ":" + usable["language"]).astype(str).to_numpy(),
            "intermediate": usable["intermediate"].astype(str).to_numpy(),
            "intermediate:seed": (
                usable["intermediate"].astype(str) + ":" + usable["seed"].astype(str)
            ).to_numpy(),
            "seed": usable["seed"].astype(str).to_numpy(),
        }
    )
    for optional in ("overlap", "train_size", "format"):
        if optional in usable:
            frame[optional] = usable[optional].to_numpy()
    return frame


def build_design(frame: pd.DataFrame, spec: ModelSpec) -> Design:
    """Matrices of `spec` on `frame`; covariates that do not vary and factors with one level
    are left out, each with a note. Raises ValueError when nothing can be fitted."""
    notes: list[str] = []
    if not spec.decompose:
        frame = frame.assign(difficulty=frame["difficulty_measured"], difficulty_within=0.0)
    columns: dict[str, np.ndarray] = {"Intercept": np.ones(len(frame))}
    fixed = list(spec.fixed)
    n_intermediates = frame["intermediate"].nunique()
    if "difficulty" in fixed and n_intermediates < 3:
        raise ValueError(
            f"difficulty varies only between intermediates and the model needs at least 3 "
            f"(found {n_intermediates})"
        )
    if "difficulty" in fixed and frame["difficulty"].nunique() < 2:
        raise ValueError("difficulty has fewer than 2 distinct values")
    within = frame["difficulty_within"].to_numpy(float)
    if "difficulty" in fixed and float(np.abs(within).max(initial=0.0)) > 1e-9:
        fixed.append("difficulty_within")
    if "overlap" in fixed and ("overlap" not in frame or frame["overlap"].nunique() < 2):
        raise ValueError("lexical overlap is unknown or the same for every language")
    if spec.covariates and "train_size" in frame and frame["train_size"].nunique() > 1:
        fixed.append("log_size")
    if spec.covariates and "format" in frame and frame["format"].nunique() > 1:
        fixed.append("format")
    for term in fixed:
        if term == "log_size":
            columns[term] = np.log(frame["train_size"].to_numpy(float))
        elif term == "format":
            formats = sorted(frame["format"].astype(str).unique())
            for level in formats[1:]:
                columns[f"format[{level}]"] = (frame["format"] == level).to_numpy(float)
        elif ":" in term:
            a, b = term.split(":")
            columns[term] = frame[a].to_numpy(float) * frame[b].to_numpy(float)
        else:
            columns[term] = frame[term].to_numpy(float)
    X = np.column_stack(list(columns.values()))
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError(f"fixed effects {', '.join(columns)} are collinear in these data")
    if len(frame) - X.shape[1] < 2:
        raise ValueError(
            f"{len(frame)} rows for {X.shape[1]} fixed effects: no residual variance to estimate"
        )
    blocks: dict[str, sparse.csc_array] = {}
    levels: dict[str, list[str]] = {}
    n_level = {c: frame[c].nunique() for c in COMPONENTS}
    for component in COMPONENTS:
        if n_level[component] < 2:
            notes.append(f"random intercept for {component} dropped: only one level")
            continue
        if component == "language" and n_level["language"] == n_level["target_task"]:
            notes.append("one language per target: language merged into target_task")
            continue
        if component == "intermediate:seed" and n_level[component] == n_level["intermediate"]:
            notes.append("one seed per intermediate: intermediate:seed merged into intermediate")
            continue
        if n_level[component] >= len(frame) - X.shape[1]:
            notes.append(
                f"random intercept for {component} dropped: {n_level[component]} levels for "
                f"{len(frame)} rows leave it inseparable from the residual"
            )
            continue
        codes, names = pd.factorize(frame[component], sort=True)
        blocks[component] = _indicator(codes, len(names))
        levels[component] = [str(v) for v in names]
    if spec.slope:
        codes, names = pd.factorize(frame["target_task"], sort=True)
        if len(names) < 2:
            raise ValueError("a random slope by target needs 2 or more targets")
        blocks[SLOPE] = _indicator(codes, len(names), frame["difficulty"].to_numpy(float))
        levels[SLOPE] = [str(v) for v in names]
    if not blocks:
        raise ValueError("no random effect can be estimated: " + "; ".join(notes))
    return Design(frame["gain"].to_numpy(float), X, list(columns), blocks, levels, notes)


# ---- exact (RE)ML from cross-products --------------------------------------------------------


class Engine:
    """Exact REML and ML log-likelihoods of a variance-components model, O(q^3) per
    evaluation after one pass over the data (q = random-effect levels), for any n.

    `var` is the component variances in `blocks` order, then the residual variance.
    """

    def __init__(self, design: Design) -> None:
        Z = sparse.hstack(list(design.blocks.values()), format="csc")
        X, y = design.X, design.y
        self.n, self.p = X.shape
        self.component = np.repeat(
            np.arange(len(design.blocks)), [b.shape[1] for b in design.blocks.values()]
        )
        self.ZtZ = (Z.T @ Z).toarray()
        self.ZtX = np.asarray(Z.T @ X)
        self.Zty = np.asarray(Z.T @ y)
        self.XtX, self.Xty, self.yty = X.T @ X, X.T @ y, float(y @ y)

    def _solve(self, var: np.ndarray) -> tuple[np.ndarray, ...]:
        s2 = var[-1]
        lam = np.sqrt(np.maximum(var[:-1], 0.0) / s2)[self.component]
        M = np.eye(len(lam)) + lam[:, None] * self.ZtZ * lam[None, :]
        L = linalg.cholesky(M, lower=True)
        lzx = linalg.solve_triangular(L, lam[:, None] * self.ZtX, lower=True)
        lzy = linalg.solve_triangular(L, lam * self.Zty, lower=True)
        xvx = (self.XtX - lzx.T @ lzx) / s2
        xvy = (self.Xty - lzx.T @ lzy) / s2
        yvy = (self.yty - lzy @ lzy) / s2
        logdet_v = self.n * math.log(s2) + 2 * float(np.log(np.diag(L)).sum())
        return xvx, xvy, yvy, logdet_v, L, lam

    def evaluate(self, var: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(GLS fixed effects, their covariance, REML llf, ML llf) at `var`."""
        xvx, xvy, yvy, logdet_v, _, _ = self._solve(np.asarray(var, float))
        c = linalg.cho_factor(xvx, lower=True)
        beta = linalg.cho_solve(c, xvy)
        quad = yvy - float(beta @ xvy)
        logdet_c = 2 * float(np.log(np.diag(c[0])).sum())
        reml = -0.5 * ((self.n - self.p) * math.log(2 * math.pi) + logdet_v + logdet_c + quad)
        ml = -0.5 * (self.n * math.log(2 * math.pi) + logdet_v + quad)
        return beta, linalg.cho_solve(c, np.eye(self.p)), reml, ml

    def profiled(self, theta: np.ndarray, reml: bool) -> tuple[float, float]:
        """(llf with the residual variance profiled out, that variance) at relative SDs
        `theta` (component SD / residual SD, lme4's parameterization; 0 is allowed)."""
        var = np.append(np.asarray(theta, float) ** 2, 1.0)
        xvx, xvy, yvy, logdet_m, _, _ = self._solve(var)  # s2 = 1: logdet_v is log|M|
        c = linalg.cho_factor(xvx, lower=True)
        quad = yvy - float(linalg.cho_solve(c, xvy) @ xvy)
        dof = self.n - self.p if reml else self.n
        s2 = quad / dof
        llf = -0.5 * (dof * (math.log(2 * math.pi * s2) + 1) + logdet_m)
        if reml:
            llf -= float(np.log(np.diag(c[0])).sum())
        return llf, s2

    def blups(self, var: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted random effects and their conditional standard errors."""
        _, _, _, _, L, lam = self._solve(np.asarray(var, float))
        ztr = self.Zty - self.ZtX @ beta
        m_inv = linalg.cho_solve((L, True), np.eye(len(lam)))
        return lam * (m_inv @ (lam * ztr)), np.sqrt(var[-1] * lam**2 * np.diag(m_inv))


def _hessian(f: object, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Central-difference Hessian of scalar `f` at `x`."""
    k = len(x)
    out = np.zeros((k, k))
    f0 = f(x)  # type: ignore[operator]
    steps = np.eye(k) * h
    for a in range(k):
        out[a, a] = (f(x + steps[a]) - 2 * f0 + f(x - steps[a])) / h**2  # type: ignore[operator]
        for b in range(a):
            out[a, b] = out[b, a] = (
                f(x + steps[a] + steps[b])  # type: ignore[operator]
                - f(x + steps[a] - steps[b])  # type: ignore[operator]
                - f(x - steps[a] + steps[b])  # type: ignore[operator]
                + f(x - steps[a] - steps[b])  # type: ignore[operator]
            ) / (4 * h**2)
    return out


def satterthwaite(engine: Engine, var: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Satterthwaite df of every fixed effect: 2 Var(b)^2 / (g' A g).

    g is the gradient of Var(b) in the log variance parameters and A the inverse of the negative
    REML Hessian in them (both numerical). Components at the boundary (~0) are held fixed. A
    Hessian that is not negative definite raises ValueError (the fit is not at a maximum).
    """
    var = np.asarray(var, float)
    free = np.flatnonzero(var > BOUNDARY * var.sum())
    log_free = np.log(var[free])

    def at(z: np.ndarray) -> np.ndarray:
        full = var.copy()
        full[free] = np.exp(z)
        return full

    hess = _hessian(lambda z: engine.evaluate(at(z))[2], log_free)
    try:
        a_cov = np.linalg.inv(-hess)
        np.linalg.cholesky(-hess)
    except np.linalg.LinAlgError as err:
        raise ValueError("the REML Hessian is not negative definite (not a maximum)") from err
    h = 1e-4
    grads = np.zeros((engine.p, len(free)))
    for k in range(len(free)):
        step = np.zeros(len(free))
        step[k] = h
        up = np.diag(engine.evaluate(at(log_free + step))[1])
        down = np.diag(engine.evaluate(at(log_free - step))[1])
        grads[:, k] = (up - down) / (2 * h)
    v = np.diag(engine.evaluate(var)[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        df = 2 * v**2 / np.einsum("ik,kl,il->i", grads, a_cov, grads)
    notes = []
    if len(free) < len(var):
        notes.append("variances at ~0 held fixed in the Satterthwaite df")
    return df, notes


EXACT_OPTIMIZERS = ("L-BFGS-B", "Powell", "Nelder-Mead")
EXACT_OPTIONS = {
    "L-BFGS-B": {"ftol": 1e-14, "gtol": 1e-9, "maxiter": 5000},
    "Powell": {"xtol": 1e-9, "ftol": 1e-14, "maxiter": 50000},
    # fatol is absolute: far below 1e-9 it is under the llf's rounding noise on large tables.
    "Nelder-Mead": {"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000, "adaptive": True},
}


def _exact_fit(
    engine: Engine,
    k: int,
    reml: bool,
    method: str,
    start: np.ndarray,
    deadline: float = math.inf,
) -> tuple[np.ndarray, bool]:
    """(variances (components, then residual) maximizing the exact profiled (RE)ML, whether
    the optimizer reports convergence); raises FitTimeout once time.monotonic() passes
    `deadline`."""
    from scipy import optimize

    def deviance(theta: np.ndarray) -> float:
        if time.monotonic() > deadline:
            raise FitTimeout(f"{FIT_SECONDS:.0f} s budget spent")
        try:
            return -engine.profiled(theta, reml)[0]
        except (linalg.LinAlgError, ValueError):
            return math.inf

    with warnings.catch_warnings():
        # Powell's line search probes far-out points where the deviance is inf; it recovers.
        warnings.simplefilter("ignore", RuntimeWarning)
        found = optimize.minimize(
            deviance, start, method=method, bounds=[(0, None)] * k, options=EXACT_OPTIONS[method]
        )
    theta = np.abs(found.x)
    s2 = engine.profiled(theta, reml)[1]
    return np.append(theta**2 * s2, s2), bool(found.success)


@dataclass
class _Optimum:
    """One optimizer run: its (RE)ML log-likelihood on the exact engine, the variances it
    reached, whether it reported convergence, and its own messages (shown if it is kept)."""

    llf: float
    label: str
    var: np.ndarray
    converged: bool
    messages: list[str] = field(default_factory=list)


@dataclass
class _Search:
    """Every optimum a backend's optimizers found, what went wrong, and the best llf of each
    optimizer (NaN when it found nothing)."""

    runs: list[_Optimum] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    attempts: dict[str, float] = field(default_factory=dict)

    def best(self) -> _Optimum | None:
        return max(self.runs, key=lambda r: r.llf, default=None)


def _exact_search(
    design: Design,
    engine: Engine,
    reml: bool,
    start: np.ndarray | None = None,
    deadline: float = math.inf,
) -> _Search:
    """The exact engine's optimizers: L-BFGS-B (fast) from `start` (if given) and every STARTS
    value, then Powell and Nelder-Mead polishing the best point so far."""
    k = len(design.blocks)
    starts = [*([] if start is None else [start]), *(np.full(k, v) for v in STARTS)]
    which = 2 if reml else 3
    search = _Search()
    for method in EXACT_OPTIMIZERS:
        label = f"exact {method}"
        best = search.best()
        if method != EXACT_OPTIMIZERS[0] and best is not None:
            starts = [np.sqrt(np.maximum(best.var[:-1], 0) / best.var[-1])]
        found: list[_Optimum] = []
        for x0 in starts:
            try:
                var, converged = _exact_fit(engine, k, reml, method, x0, deadline)
                found.append(_Optimum(engine.evaluate(var)[which], label, var, converged))
            except FitTimeout as err:
                search.problems.append(f"{label}: stopped, {err}")
                break
            except (linalg.LinAlgError, ValueError) as err:
                search.problems.append(
                    f"{label} from start {np.round(x0, 3).tolist()} failed: {err}"
                )
        found = [f for f in found if math.isfinite(f.llf)]
        search.runs += found
        search.attempts[label] = max((f.llf for f in found), default=math.nan)
    return search


def _keep_best(engine: Engine, search: _Search) -> tuple[_Optimum | None, list[str]]:
    """The run with the best log-likelihood and the messages that go with it.

    A lower optimum matters to a reader only if the fixed effects differ there: then the data
    hold two answers ("different maxima"). Otherwise it is a note (a start or optimizer that
    stopped early).
    """
    best = search.best()
    if best is None:
        return None, search.problems
    messages = list(dict.fromkeys([*best.messages, *search.problems]))
    beta_best, cov_best, _, _ = engine.evaluate(best.var)
    se_best = np.sqrt(np.diag(cov_best))
    lower = [r for r in search.runs if r.converged and best.llf - r.llf > 0.01]
    for run in sorted(lower, key=lambda r: r.llf)[:1]:
        shift = float(np.max(np.abs(engine.evaluate(run.var)[0] - beta_best) / se_best))
        kind = "different maxima" if shift > 0.1 else "note: lower stop"
        messages.append(
            f"{kind}: {run.label} stopped {best.llf - run.llf:.3f} log-likelihood units below "
            f"{best.label}, fixed effects there up to {shift:.2f} SE away (kept the best)"
        )
    return best, messages


def fit_lmm(gains: pd.DataFrame, spec: ModelSpec = MAIN, backend: Backend = "exact") -> LmmFit:
    """REML estimates with Satterthwaite tests, plus the ML log-likelihood; never raises on
    data (an unknown `backend` is a ValueError).

    `backend`: "exact" (the default and the one the report trusts: the exact likelihood's own
    optimizers), "statsmodels" (MixedLM's optimizers, judged on the exact likelihood: a
    cross-check) or "lme4" (lme4 + lmerTest through Rscript). A fit whose REML Hessian is not
    negative definite counts as failed. Warnings (singular fit, lower optima, dropped
    components) are in `warnings`, never swallowed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    frame = model_frame(gains)
    result = LmmFit(spec=spec.name, ok=False, n_obs=len(frame), backend=backend)
    if frame.empty:
        result.reason = "no rows with both a gain and a difficulty"
        return result
    try:
        design = build_design(frame, spec)
    except ValueError as err:
        result.reason = str(err)
        return result
    result.levels = {k: len(v) for k, v in design.levels.items()}
    if backend == "lme4":
        return _fit_lme4(frame, design, result)
    if backend == "statsmodels" and len(design.y) > STATSMODELS_MAX_ROWS:
        result.reason = (
            f"statsmodels backend: {len(design.y)} rows, over {STATSMODELS_MAX_ROWS} (one fit "
            "takes minutes there); the exact backend fits any size"
        )
        return result
    with _one_blas_thread():
        return _fit_python(design, backend, result, time.monotonic() + FIT_SECONDS)


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Small dense algebra many times over: BLAS threads only contend (25x slower measured
    on 2 busy cores), so limit BLAS to one thread where threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scipy's stack
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _fit_python(design: Design, backend: Backend, result: LmmFit, deadline: float) -> LmmFit:
    """REML, Satterthwaite df and the ML refit with the exact engine's or statsmodels'
    optimizers; the exact engine supplies the likelihood, Hessian and BLUPs either way."""
    engine = Engine(design)
    if backend == "exact":
        search = _exact_search(design, engine, True, deadline=deadline)
    else:
        search = _statsmodels_search(design, engine, True, deadline)
    kept, caught = _keep_best(engine, search)
    result.attempts = search.attempts
    if kept is None:
        result.reason = "every optimizer failed: " + "; ".join(caught)
        return result
    var = kept.var
    try:
        df, df_notes = satterthwaite(engine, var)
    except ValueError as err:
        result.reason = f"{kept.label}: {err}"
        result.warnings = caught
        return result
    if backend == "exact":  # the ML refit starts from the REML optimum
        start = np.sqrt(var[:-1] / var[-1])
        ml_search = _exact_search(design, engine, False, start, deadline)
    else:
        ml_search = _statsmodels_search(design, engine, False, deadline)
    ml_kept, ml_caught = _keep_best(engine, ml_search)
    if ml_kept is not None:
        result.ml_llf = engine.evaluate(ml_kept.var)[3]
    else:
        ml_caught = ["ML fit failed; AIC/BIC unavailable", *ml_caught]
    result.warnings = list(
        dict.fromkeys([*design.notes, *caught, *(f"ML: {m}" for m in ml_caught), *df_notes])
    )
    result.method = kept.label
    _fill_tables(result, engine, design, var, df)
    return result


def _fill_tables(
    result: LmmFit, engine: Engine, design: Design, var: np.ndarray, df: np.ndarray
) -> None:
    """Fixed-effects, variance and BLUP tables from the variances and Satterthwaite df."""
    beta, cov, reml, _ = engine.evaluate(var)
    se = np.sqrt(np.diag(cov))
    t = beta / se
    half = stats.t.ppf(0.975, df) * se
    result.fixed = pd.DataFrame(
        {
            "estimate": beta,
            "se": se,
            "df": df,
            "t": t,
            "p": 2 * stats.t.sf(np.abs(t), df),
            "ci_low": beta - half,
            "ci_high": beta + half,
        },
        index=pd.Index(design.fe_names, name="term"),
    )
    names = [*design.blocks, "residual"]
    total = float(var.sum())
    result.variance = pd.DataFrame(
        {
            "variance": var,
            "sd": np.sqrt(np.maximum(var, 0)),
            "share": var / total if total > 0 else np.nan,
            "levels": [*(len(design.levels[n]) for n in design.blocks), engine.n],
        },
        index=pd.Index(names, name="component"),
    )
    boundary = [
        f"variance of {name} is ~0 (singular fit: the data cannot separate it)"
        for name, v in zip(names[:-1], var[:-1], strict=True)
        if v <= BOUNDARY * total
    ]
    result.warnings = list(dict.fromkeys([*result.warnings, *boundary]))
    values, ses = engine.blups(var, beta)
    result.blups = pd.DataFrame(
        {
            "component": np.repeat(
                list(design.blocks), [len(design.levels[n]) for n in design.blocks]
            ),
            "level": [lv for n in design.blocks for lv in design.levels[n]],
            "value": values,
            "se": ses,
        }
    )
    result.reml_llf = reml
    result.n_params = engine.p + len(var)
    result.ok = True


# ---- statsmodels -----------------------------------------------------------------------------


def _statsmodels_fit(
    design: Design, reml: bool, method: str, start: object | None = None
) -> tuple[object | None, list[str], str | None]:
    """One statsmodels fit: (result or None, warning messages, error)."""
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    n = len(design.y)
    use_sparse = n >= SPARSE_FROM_ROWS
    names = list(design.blocks)
    mats = [[b.tocsr() if use_sparse else b.toarray()] for b in design.blocks.values()]
    colnames = [[f"{name}[{lv}]" for lv in design.levels[name]] for name in names]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = MixedLM(
                design.y,
                design.X,
                groups=np.zeros(n),
                exog_re=np.zeros((n, 0)),
                exog_vc=VCSpec(names, colnames, mats),
            )
            fitted = model.fit(reml=reml, method=[method], start_params=start, **TOLERANCES[method])
        # statsmodels fails in many ways (LinAlgError, ValueError, IndexError...); a report must
        # still be written, so a failure becomes a recorded reason.
        except Exception as err:
            return None, [], f"{type(err).__name__}: {err}"[:300]
    messages = [f"{w.category.__name__}: {str(w.message).strip()}" for w in caught]
    # Our tolerances reach scipy (statsmodels passes them on) but its argument check flags them.
    messages = [
        m for m in messages if "Retrying MixedLM" not in m and "not used by MixedLM.fit" not in m
    ]
    return fitted, list(dict.fromkeys(messages)), None


def _variances(fitted: object) -> np.ndarray:
    return np.append(np.asarray(fitted.vcomp, float), float(fitted.scale))  # type: ignore[attr-defined]


def _statsmodels_search(design: Design, engine: Engine, reml: bool, deadline: float) -> _Search:
    """statsmodels MixedLM with each of OPTIMIZERS (tight tolerances), every optimum judged on
    the exact likelihood; statsmodels' own warnings go with its optimum (shown if it is kept)."""
    search = _Search()
    for method in OPTIMIZERS:
        label = f"statsmodels {method}"
        if time.monotonic() > deadline:
            search.problems.append(f"{label} not tried: {FIT_SECONDS:.0f} s budget spent")
            continue
        fitted, caught, error = _statsmodels_fit(design, reml, method)
        search.attempts[label] = math.nan
        if fitted is None:
            search.problems.append(f"{label} failed: {error}")
            continue
        var = _variances(fitted)
        try:
            exact = engine.evaluate(var)[2 if reml else 3]
        except (linalg.LinAlgError, ValueError) as err:
            search.problems.append(f"{label}: variances unusable ({err})")
            continue
        llf = float(fitted.llf)  # type: ignore[attr-defined]
        if abs(exact - llf) > LLF_AGREEMENT:
            caught.append(f"statsmodels llf {llf:.4f} differs from the exact {exact:.4f}")
        converged = bool(fitted.converged)  # type: ignore[attr-defined]
        if not converged:
            caught.append(f"{label} did not report convergence")
        search.attempts[label] = exact
        search.runs.append(_Optimum(exact, label, var, converged, caught))
    return search


# ---- lme4 through Rscript --------------------------------------------------------------------


def lme4_available() -> str | None:
    """None when Rscript with lme4 and lmerTest is usable, else why not."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return "Rscript is not on PATH (Debian: apt-get install r-cran-lme4 r-cran-lmertest)"
    probe = subprocess.run(
        [rscript, "-e", "suppressMessages({library(lme4); library(lmerTest)})"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return "R packages lme4/lmerTest are not installed (Debian: r-cran-lmertest)"
    return None


_R_TERMS = {
    "target_task": "(1 | target_task)",
    "language": "(1 | language)",
    "intermediate": "(1 | intermediate)",
    "intermediate:seed": "(1 | intermediate_seed)",
    "seed": "(1 | seed)",
    SLOPE: "(0 + difficulty | target_task)",
}
_R_SCRIPT = r"""
args <- commandArgs(trailingOnly = TRUE)
suppressMessages({library(lme4); library(lmerTest)})
d <- read.csv(args[1], stringsAsFactors = TRUE)
f <- as.formula(readLines(args[2]))
ctl <- lmerControl(check.conv.singular = "warning")
msgs <- character(0)
keep <- function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") }
m <- withCallingHandlers(lmer(f, data = d, REML = TRUE, control = ctl), warning = keep)
ml <- withCallingHandlers(refitML(m), warning = keep)
co <- summary(m, ddf = "Satterthwaite")$coefficients
vc <- as.data.frame(VarCorr(m))
out <- args[3]
write.csv(data.frame(term = rownames(co), estimate = co[, 1], se = co[, 2], df = co[, 3]),
          file.path(out, "fixed.csv"), row.names = FALSE)
write.csv(data.frame(grp = vc$grp, var1 = ifelse(is.na(vc$var1), "", vc$var1), vcov = vc$vcov),
          file.path(out, "variance.csv"), row.names = FALSE)
writeLines(c(format(logLik(m), digits = 15), format(logLik(ml), digits = 15),
             if (isSingular(m)) "boundary (singular) fit" else character(0), msgs),
           file.path(out, "llf.txt"))
"""


def _fit_lme4(frame: pd.DataFrame, design: Design, result: LmmFit) -> LmmFit:
    """The same model with lme4 (REML) and lmerTest's Satterthwaite df; same tables."""
    why = lme4_available()
    if why is not None:
        result.reason = why
        return result
    fixed = " + ".join(n for n in design.fe_names if n != "Intercept") or "1"
    fixed = fixed.replace("format[", "format_").replace("]", "")
    random = " + ".join(_R_TERMS[c] for c in design.blocks)
    data = pd.DataFrame({"gain": design.y})
    for k, name in enumerate(design.fe_names):
        if name != "Intercept":
            data[name.replace(":", "_x_").replace("format[", "format_").replace("]", "")] = (
                design.X[:, k]
            )
    fixed = fixed.replace(":", "_x_")
    for column in ("target_task", "language", "intermediate", "seed"):
        data[column] = frame[column].to_numpy()
    data["intermediate_seed"] = frame["intermediate:seed"].to_numpy()
    if "difficulty" not in data:  # the random slope needs it; never replace the fixed term's
        data["difficulty"] = frame["difficulty"].to_numpy()
    with tempfile.TemporaryDirectory(prefix="itx-lme4-") as tmp:
        folder = Path(tmp)
        data.to_csv(folder / "data.csv", index=False)
        (folder / "formula.txt").write_text(f"gain ~ {fixed} + {random}\n")
        (folder / "fit.R").write_text(_R_SCRIPT)
        run = subprocess.run(
            [
                "Rscript",
                str(folder / "fit.R"),
                str(folder / "data.csv"),
                str(folder / "formula.txt"),
                str(folder),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            result.reason = "lme4 failed: " + (run.stderr.strip().splitlines() or ["?"])[-1]
            return result
        fixed_table = pd.read_csv(folder / "fixed.csv")
        vc = pd.read_csv(folder / "variance.csv", keep_default_na=False)
        lines = (folder / "llf.txt").read_text().splitlines()
    by_r = {
        ("target_task", ""): "target_task",
        ("language", ""): "language",
        ("intermediate", ""): "intermediate",
        ("intermediate_seed", ""): "intermediate:seed",
        ("seed", ""): "seed",
        ("Residual", ""): "residual",
        ("target_task", "difficulty"): SLOPE,
    }
    got = {
        by_r[(str(g).split(".")[0], "" if v == "(Intercept)" else str(v))]: float(x)
        for g, v, x in vc.itertuples(index=False, name=None)
    }
    var = np.array([got[n] for n in [*design.blocks, "residual"]])
    engine = Engine(design)
    _fill_tables(result, engine, design, var, fixed_table["df"].to_numpy(float))
    # lme4's own estimates and SEs replace the exact engine's (they agree at lme4's optimum).
    result.fixed["estimate"] = fixed_table["estimate"].to_numpy(float)
    result.fixed["se"] = fixed_table["se"].to_numpy(float)
    f = result.fixed
    f["t"] = f["estimate"] / f["se"]
    f["p"] = 2 * stats.t.sf(np.abs(f["t"]), f["df"])
    half = stats.t.ppf(0.975, f["df"]) * f["se"]
    f["ci_low"], f["ci_high"] = f["estimate"] - half, f["estimate"] + half
    result.reml_llf, result.ml_llf = float(lines[0]), float(lines[1])
    result.warnings = list(dict.fromkeys([*design.notes, *result.warnings, *lines[2:]]))
    result.method = "lme4 (bobyqa, nloptwrap)"
    return result


def compare(fits: list[LmmFit]) -> pd.DataFrame:
    """Model comparison on ML fits: parameters, ML log-likelihood, AIC, BIC, and the REML
    log-likelihood. No likelihood-ratio test: the variants differ from the main model in
    fixed effects and random terms at once (a chi-square on a variance at its boundary is not
    chi-square), and difficulty's test is the Satterthwaite t, not an LR chi-square."""
    ok = [f for f in fits if f.ok]
    if not ok:
        return pd.DataFrame(columns=["model", "parameters", "ML llf", "AIC", "BIC", "REML llf"])
    return pd.DataFrame(
        {
            "model": [f.spec for f in ok],
            "parameters": [f.n_params for f in ok],
            "ML llf": [f.ml_llf for f in ok],
            "AIC": [f.aic for f in ok],
            "BIC": [f.bic for f in ok],
            "REML llf": [f.reml_llf for f in ok],
        }
    )

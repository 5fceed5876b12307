"""The full mixed model: exact likelihood, Satterthwaite df, robust fitting, lme4 agreement."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.mixed import (
    MAIN,
    OVERLAP,
    SLOPES,
    Engine,
    ModelSpec,
    build_design,
    compare,
    fit_lmm,
    lme4_available,
    model_frame,
)
from analysis.models import two_stage
from analysis.simulate import DEMO_ZERO_SHOT, simulate_gains


@pytest.fixture(scope="module")
def demo_gains():
    """6 intermediates x 3 seeds on the demo's targets and languages, 10% of trials missing."""
    return simulate_gains(np.random.default_rng(1), 5.0, 6, 3, DEMO_ZERO_SHOT, missing=0.1)


# the model the lme4 run below fitted: each row's seed's measured difficulty, one term
MEASURED = ModelSpec("main, measured difficulty", decompose=False)


@pytest.fixture(scope="module")
def demo_fit(demo_gains):
    return fit_lmm(demo_gains, MEASURED)


# lme4 1.1 / lmerTest 3.1 (Debian bookworm r-cran-lme4, r-cran-lmertest) on `demo_gains`:
# lmer(gain ~ difficulty + (1|target_task) + (1|language) + (1|intermediate)
#      + (1|intermediate_seed) + (1|seed)), REML, summary(ddf = "Satterthwaite").
LME4 = {"estimate": 5.4443, "se": 1.1063, "df": 4.0854, "reml": -196.855781850473}
LME4_ML = -198.466944819053


def test_matches_lme4_golden_numbers(demo_fit):
    fit = demo_fit
    assert fit.ok, fit.reason
    assert fit.term("difficulty", "estimate") == pytest.approx(LME4["estimate"], abs=1e-3)
    assert fit.term("difficulty", "se") == pytest.approx(LME4["se"], abs=1e-3)
    assert fit.term("difficulty", "df") == pytest.approx(LME4["df"], abs=0.01)
    assert fit.reml_llf == pytest.approx(LME4["reml"], abs=1e-5)
    assert fit.ml_llf == pytest.approx(LME4_ML, abs=1e-5)
    assert list(fit.variance.index) == [
        "target_task",
        "language",
        "intermediate",
        "intermediate:seed",
        "seed",
        "residual",
    ]
    assert fit.variance["share"].sum() == pytest.approx(1.0)
    # One default path: the exact engine's three optimizers, every one recorded; the kept one
    # has the best log-likelihood.
    assert fit.backend == "exact"
    assert set(fit.attempts) == {"exact L-BFGS-B", "exact Powell", "exact Nelder-Mead"}
    assert fit.reml_llf == pytest.approx(max(v for v in fit.attempts.values() if v == v))


def test_exact_likelihood_equals_statsmodels():
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    gains = simulate_gains(np.random.default_rng(4), 3.0, 4, 2, {"nli": 3, "pos": 2})
    design = build_design(model_frame(gains), MAIN)
    n = len(design.y)
    names = list(design.blocks)
    model = MixedLM(
        design.y,
        design.X,
        groups=np.zeros(n),
        exog_re=np.zeros((n, 0)),
        exog_vc=VCSpec(
            names, [[str(i)] for i in names], [[b.toarray()] for b in design.blocks.values()]
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # boundary warnings are beside the point here
        fitted = model.fit(reml=True, method=["powell"])
    var = np.append(fitted.vcomp, fitted.scale)
    beta, cov, reml, _ = Engine(design).evaluate(var)
    assert reml == pytest.approx(fitted.llf, abs=1e-6)
    assert beta == pytest.approx(np.asarray(fitted.fe_params), abs=1e-6)
    # statsmodels' SEs come from its full observed-information matrix and differ slightly from
    # (X'V^-1X)^-1, which lme4 and lmerTest use (and which matches LME4 above).
    assert np.sqrt(np.diag(cov)) == pytest.approx(np.asarray(fitted.bse_fe), rel=0.02)


def test_balanced_design_satterthwaite_is_two_stage():
    # Complete and balanced: difficulty's test is one between-intermediate mean square, so the
    # Satterthwaite df is exactly I - 2 and estimate and SE equal the two-stage OLS.
    gains = simulate_gains(
        np.random.default_rng(7),
        4.0,
        7,
        3,
        {"nli": 3, "pos": 3},
        sd_intermediate=2.0,
        difficulty_noise=0.0,
    )
    fit = fit_lmm(gains, MAIN)
    ts = two_stage(gains)
    assert fit.term("difficulty", "df") == pytest.approx(5.0, abs=0.01)
    assert fit.term("difficulty", "estimate") == pytest.approx(ts.estimate, abs=1e-4)
    assert fit.term("difficulty", "se") == pytest.approx(ts.se, rel=1e-3)
    assert fit.term("difficulty", "p") == pytest.approx(ts.p_t, rel=1e-3)


def test_variants_and_comparison(demo_gains):
    slope = fit_lmm(demo_gains, SLOPES)
    assert slope.ok
    assert "difficulty|target_task" in slope.variance.index
    assert any("~0" in w for w in slope.warnings)  # no slope variance was planted
    overlap = fit_lmm(demo_gains, OVERLAP)
    assert overlap.ok
    assert {"overlap", "difficulty:overlap"} <= set(overlap.fixed.index)
    table = compare([fit_lmm(demo_gains, MAIN), slope, overlap])
    # main: intercept, difficulty (between), difficulty_within + 5 components + residual = 9;
    # the random slope adds its variance; overlap adds overlap and difficulty:overlap
    assert list(table["parameters"]) == [9, 10, 11]
    row = table.iloc[0]
    assert row["AIC"] == pytest.approx(-2 * row["ML llf"] + 18)


def test_planted_effects_recovered():
    gains = simulate_gains(
        np.random.default_rng(9), 10.0, 9, 4, {"nli": 6, "pos": 6}, sd_language=2.0, missing=0.1
    )
    fit = fit_lmm(gains, MAIN)
    est, se = fit.term("difficulty", "estimate"), fit.term("difficulty", "se")
    assert abs(est - 10.0) < 3 * se
    assert fit.term("difficulty", "p") < 0.05
    assert 4 < fit.term("difficulty", "df") < 9  # about I - 2 = 7, never the row count
    assert fit.variance.loc["residual", "sd"] == pytest.approx(1.0, abs=0.1)
    assert fit.variance.loc["language", "sd"] == pytest.approx(2.0, abs=0.8)
    blups = fit.blups[fit.blups["component"] == "intermediate"]
    assert len(blups) == 9
    assert (blups["se"] > 0).all()


def test_failures_are_results():
    flat = pd.DataFrame(
        {
            "intermediate": list("AABBCC"),
            "seed": [0, 1, 0, 1, 0, 1],
            "target_task": "nli",
            "language": "de",
            "gain": [1.0, 2.0, 3.0, 4.0, 2.0, 5.0],
            "difficulty": 0.5,
        }
    )
    fit = fit_lmm(flat)
    assert not fit.ok
    assert "fewer than 2 distinct" in fit.reason
    two = fit_lmm(flat.iloc[:4].assign(difficulty=[0.1, 0.2, 0.5, 0.6]))
    assert two.reason == (
        "difficulty varies only between intermediates and the model needs at least 3 (found 2)"
    )
    assert not fit_lmm(flat.iloc[0:0]).ok
    assert math.isnan(fit.term("difficulty", "estimate"))
    with pytest.raises(ValueError, match="unknown backend"):
        fit_lmm(flat.assign(difficulty=[0.1, 0.1, 0.5, 0.5, 0.9, 0.9]), backend="sas")


def test_statsmodels_backend_cross_checks_the_exact_engine(demo_gains, demo_fit):
    # statsmodels' own optimizers, judged on the exact likelihood: never above the exact
    # optimum (that would mean the default engine stopped short), and the same answer
    r = fit_lmm(demo_gains, MEASURED, backend="statsmodels")
    assert r.ok, r.reason
    assert r.backend == "statsmodels" and r.method.startswith("statsmodels ")
    assert set(r.attempts) == {f"statsmodels {m}" for m in ("lbfgs", "bfgs", "powell", "nm")}
    assert r.reml_llf <= demo_fit.reml_llf + 1e-6
    assert r.reml_llf == pytest.approx(demo_fit.reml_llf, abs=1e-3)
    assert r.term("difficulty", "estimate") == pytest.approx(LME4["estimate"], abs=1e-3)
    assert r.term("difficulty", "df") == pytest.approx(LME4["df"], abs=0.02)


def test_backend_choices_are_the_configs():
    from typing import get_args

    from analysis.mixed import BACKENDS
    from sweep.config import AnalysisConfig, Backend

    assert get_args(Backend) == BACKENDS == ("exact", "statsmodels", "lme4")
    assert AnalysisConfig().backend == "exact"  # the default path is the exact engine


def test_lme4_backend_gives_the_same_tables(demo_gains, demo_fit):
    why = lme4_available()
    if why is not None:
        pytest.skip(f"lme4 backend not testable: {why}")
    r = fit_lmm(demo_gains, MEASURED, backend="lme4")  # the model demo_fit fits
    assert r.ok, r.reason
    assert list(r.fixed.columns) == list(demo_fit.fixed.columns)
    assert list(r.variance.index) == list(demo_fit.variance.index)
    assert r.fixed["estimate"].to_numpy() == pytest.approx(demo_fit.fixed["estimate"], abs=1e-3)
    assert r.fixed["df"].to_numpy() == pytest.approx(demo_fit.fixed["df"], abs=0.01)
    assert r.variance["variance"].to_numpy() == pytest.approx(
        demo_fit.variance["variance"], abs=1e-3
    )
    assert r.ml_llf == pytest.approx(demo_fit.ml_llf, abs=1e-4)

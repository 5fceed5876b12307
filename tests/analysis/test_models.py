"""Two-stage test, permutation p, rank correlations and the mixed model."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.gains import gain_table
from analysis.models import (
    NEEDS_THREE,
    _ols,
    correlations,
    intermediate_means,
    measure_correlations,
    permutation_floor,
    permutation_p,
    two_stage,
)
from analysis.simulate import DEMO_ZERO_SHOT, simulate_gains, simulate_rows


def gains_frame(cells):
    """A gains table from (intermediate, seed, difficulty, gain) tuples, one target/language."""
    return pd.DataFrame(
        [
            {
                "intermediate": name,
                "seed": seed,
                "target_task": "nli",
                "language": "ov50",
                "gain": gain,
                "difficulty": difficulty,
            }
            for name, seed, difficulty, gain in cells
        ]
    )


# Three intermediates, two seeds each. Per-intermediate means (difficulty over seeds, gain over
# rows): A (0.2, 1), B (0.5, 4), C (0.8, 4).
GOLDEN = gains_frame(
    [
        ("A", 0, 0.1, 0.0),
        ("A", 1, 0.3, 2.0),
        ("B", 0, 0.5, 3.0),
        ("B", 1, 0.5, 5.0),
        ("C", 0, 0.8, 4.0),
        ("C", 1, 0.8, 4.0),
    ]
)


def test_two_stage_golden():
    # By hand: x = (0.2, 0.5, 0.8), y = (1, 4, 4); dx = (-0.3, 0, 0.3), dy = (-2, 1, 1).
    # Sxy = 0.6 + 0 + 0.3 = 0.9, Sxx = 0.18, slope = 5, intercept = 3 - 5 * 0.5 = 0.5.
    # Fitted (1.5, 3, 4.5), residuals (-0.5, 1, -0.5), SSR = 1.5, df = 1, s^2 = 1.5.
    # SE = sqrt(1.5 / 0.18) = sqrt(25 / 3) = 2.88675; t = 5 / SE = sqrt(3).
    # t(1) is Cauchy: p = 1 - (2 / pi) * atan(sqrt(3)) = 1 - (2 / pi) * (pi / 3) = 1 / 3;
    # its 97.5% quantile is tan(0.475 * pi) = 12.7062.
    ts = two_stage(GOLDEN)
    se = math.sqrt(25 / 3)
    assert ts.n_intermediates == 3
    assert ts.df == 1
    assert ts.estimate == pytest.approx(5.0)
    assert ts.intercept == pytest.approx(0.5)
    assert ts.se == pytest.approx(se)
    assert ts.t == pytest.approx(math.sqrt(3))
    assert ts.p_t == pytest.approx(1 / 3)
    half = math.tan(0.475 * math.pi) * se
    assert (ts.ci_low, ts.ci_high) == pytest.approx((5 - half, 5 + half))
    # Permutations of dx against dy: sum = -2 dx1 + dx2 + dx3 = -3 dx1 (the dx sum to 0), so
    # |sum| = 0.9 whenever dx1 = +-0.3: 4 of the 3! = 6 orderings. p = 4 / 6.
    assert ts.exact
    assert ts.n_perm == 6
    assert ts.p_perm == pytest.approx(4 / 6)
    assert ts.note is None


def test_intermediate_means_average_seeds_then_rows():
    means = intermediate_means(GOLDEN).set_index("intermediate")
    assert means["difficulty"].tolist() == pytest.approx([0.2, 0.5, 0.8])
    assert means["gain"].tolist() == pytest.approx([1.0, 4.0, 4.0])
    assert means["n_seeds"].tolist() == [2, 2, 2]


def test_exact_permutation_p_perfect_order():
    # 4 intermediates, gain strictly increasing in difficulty: only the observed ordering and
    # its reverse reach |slope| = observed, so the two-sided p is 2 / 4! = 2 / 24.
    gains = gains_frame([(f"T{i}", 0, 0.1 * (i + 1), float(i)) for i in range(4)])
    ts = two_stage(gains)
    assert ts.exact
    assert ts.n_perm == 24
    assert ts.p_perm == pytest.approx(2 / 24)


def test_permutation_p_draws_beyond_eight():
    x = np.arange(9, dtype=float)
    p, n, exact = permutation_p(x, 2 * x + 1, n_draws=2000, seed=1)
    assert not exact
    assert n == 2000
    # Only 2 of 9! orderings tie the observed one; the draws almost surely miss both.
    assert p == pytest.approx(1 / 2001)
    assert permutation_p(x, 2 * x + 1, n_draws=2000, seed=1)[0] == p  # seeded


def test_two_stage_with_two_intermediates_gives_slope_only():
    ts = two_stage(gains_frame([("A", 0, 0.2, 1.0), ("B", 0, 0.6, 3.0)]))
    assert ts.estimate == pytest.approx(5.0)
    assert math.isnan(ts.se)
    assert math.isnan(ts.p_t)
    assert math.isnan(ts.p_perm)
    assert ts.note.startswith(NEEDS_THREE)


def test_two_stage_without_difficulty_spread():
    ts = two_stage(
        gains_frame([(n, 0, 0.5, g) for n, g in zip("ABC", (1.0, 2.0, 4.0), strict=True)])
    )
    assert math.isnan(ts.estimate)
    assert "does not vary" in ts.note


def test_correlations_perfect_order_and_small_cases():
    gains = gains_frame(
        [(f"T{i}", s, 0.1 * (i + 1), float(i) + 0.1 * s) for i in range(4) for s in range(3)]
    )
    corr = correlations(gains)
    assert corr.spearman == pytest.approx(1.0)
    assert corr.kendall == pytest.approx(1.0)
    # by hand: of the 4! = 24 orderings of the intermediates only the observed one (rho = 1)
    # and its reverse (rho = -1) reach |rho| = 1: exact two-sided p = 2 / 24
    assert corr.exact and corr.n_perm == 24
    assert corr.spearman_p == pytest.approx(2 / 24)
    assert corr.kendall_p == pytest.approx(2 / 24)
    two = correlations(gains[gains["intermediate"].isin(["T0", "T1"])])
    assert math.isnan(two.spearman)
    assert math.isnan(two.kendall_p)
    assert two.note.startswith(NEEDS_THREE)


def test_correlation_permutation_resamples_intermediates_and_is_calibrated():
    # No effect, intermediates with their own effect: a seed bootstrap excluded 0 in over half
    # of such studies; the permutation over intermediates must reject about 5% (150 studies:
    # binomial 99% range for 5% is 1 to 17 rejections).
    rng = np.random.default_rng(31)
    rejected = 0
    for _ in range(150):
        gains = simulate_gains(rng, 0.0, 6, 3, DEMO_ZERO_SHOT, sd_intermediate=1.0)
        rejected += correlations(gains).spearman_p < 0.05
    assert 1 <= rejected <= 17
    big = gain_table(simulate_rows(np.random.default_rng(5), 4.0, 9, 2, sd_intermediate=1.0))
    corr = correlations(big, n_draws=500, seed=2)
    assert not corr.exact and corr.n_perm == 500
    assert corr == correlations(big, n_draws=500, seed=2)  # seeded


def test_permutation_floor_is_computed_not_assumed():
    # x symmetric around its mean: the mirrored ordering ties, floor 2 / 4! ...
    x, y = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 1.0, 3.0, 7.0])
    assert permutation_floor(x, y) == pytest.approx(2 / 24)
    # ... but with x skewed, only one ordering reaches the largest |slope|: 1 / 4! (the
    # "2 / I!" sentence was wrong, 25 of 500 null studies had p = 1/24)
    x = np.array([0.1, 0.2, 0.3, 0.9])
    assert permutation_floor(x, y) == pytest.approx(1 / 24)
    ts = two_stage(
        gains_frame([(f"T{i}", 0, d, g) for i, (d, g) in enumerate(zip(x, y, strict=True))])
    )
    assert ts.p_floor == pytest.approx(1 / 24)
    assert ts.p_perm == pytest.approx(1 / 24)  # the observed ordering is the extreme one


def test_equal_covariate_with_float_noise_is_flat():
    # three equal cosines whose mean differs from each by 1e-16 used to give se = 3.7e16
    x = np.full(3, 0.1) + np.array([0.0, 1e-17, -1e-17])
    assert math.isnan(_ols(x, np.array([1.0, 2.0, 4.0]))[2])
    cos = 0.9135
    ts = two_stage(
        gains_frame([(n, 0, cos, g) for n, g in zip("ABC", (1.0, 2.0, 4.0), strict=True)])
    )
    assert math.isnan(ts.se) and "does not vary" in ts.note


def test_mean_gain_weights_targets_equally_and_fills_missing_targets():
    rows = []
    # target a has 3 languages, b one; a gains 1 everywhere, b gains 4; intermediate C lacks b
    for name, d in (("A", 0.2), ("B", 0.5), ("C", 0.8)):
        for target, langs, gain in (("a", ("x", "y", "z"), 1.0), ("b", ("w",), 4.0)):
            if name == "C" and target == "b":
                continue
            for lang in langs:
                rows.append((name, 0, target, lang, gain, d))
    gains = pd.DataFrame(
        rows, columns=["intermediate", "seed", "target_task", "language", "gain", "difficulty"]
    )
    means = intermediate_means(gains).set_index("intermediate")
    # by hand: A and B (1 + 4) / 2 = 2.5, not (3 * 1 + 4) / 4 = 1.75 (weights by languages);
    # C's missing b is filled by the additive fit: C + b effect = 4, so C too is 2.5
    assert means["gain"].tolist() == pytest.approx([2.5, 2.5, 2.5])
    assert means["n_targets"].tolist() == [2, 2, 1]


def test_planted_slope_recovered_by_two_stage():
    # Intermediates carry their own effect (sd 1 point): exactly what the two-stage SE includes.
    rows = simulate_rows(np.random.default_rng(3), 10.0, 8, 4, sd_intermediate=1.0)
    ts = two_stage(gain_table(rows))
    assert abs(ts.estimate - 10.0) < 3 * ts.se
    assert ts.p_perm < 0.01


def test_zero_slope_not_found():
    rows = simulate_rows(np.random.default_rng(2), 0.0, 6, 4, sd_intermediate=1.0)
    gains = gain_table(rows)
    ts = two_stage(gains)
    assert abs(ts.t) < 1.0
    assert ts.p_perm > 0.2


def test_two_stage_by_target_recovers_each_targets_own_slope():
    from analysis.models import two_stage_by_target

    # by hand: target a has gain = 2 * difficulty, target b gain = 10 - 1 * difficulty, exactly,
    # at difficulties 0.2, 0.5, 0.9; per-target OLS slopes are 2 and -1, residuals 0
    rows = []
    for name, d in (("i1", 0.2), ("i2", 0.5), ("i3", 0.9)):
        for target, gain in (("a", 2 * d), ("b", 10 - d)):
            rows.append(
                {
                    "intermediate": name,
                    "seed": 0,
                    "target_task": target,
                    "language": "xx",
                    "gain": gain,
                    "difficulty": d,
                }
            )
    table = two_stage_by_target(pd.DataFrame(rows))
    assert list(table.target_task) == ["a", "b"]
    assert table.slope.tolist() == pytest.approx([2.0, -1.0])
    assert table.intermediates.tolist() == [3, 3] and table.df.tolist() == [1, 1]


def test_two_stage_on_another_covariate_is_the_same_machinery():
    # GOLDEN with its difficulty renamed: the slope by hand above, 5, and the same t
    ts = two_stage(GOLDEN.rename(columns={"difficulty": "similarity"}), covariate="similarity")
    assert ts.estimate == pytest.approx(5.0)
    assert ts.t == pytest.approx(math.sqrt(3))
    assert ts.means["similarity"].tolist() == pytest.approx([0.2, 0.5, 0.8])


def test_measure_correlations_by_hand():
    means = pd.DataFrame(
        {
            "a": [1.0, 2.0, 3.0, 4.0],
            "b": [4.0, 3.0, 2.0, 1.0],
            "c": [1.0, 3.0, 2.0, 4.0],
            "d": [np.nan, np.nan, 1.0, 2.0],
            "e": [7.0, 7.0, 7.0, 7.0],
        }
    )
    table = measure_correlations(means, ["a", "b", "c", "d", "e"]).set_index(["measure", "versus"])
    assert table.loc[("a", "b"), "spearman"] == pytest.approx(-1.0)
    # rank differences (0, 1, 1, 0): 1 - 6 * 2 / (4 * 15) = 0.8
    assert table.loc[("a", "c"), "spearman"] == pytest.approx(0.8)
    assert table.loc[("a", "d"), "intermediates"] == 2
    assert math.isnan(table.loc[("a", "d"), "spearman"])
    assert table.loc[("a", "d"), "note"].startswith(NEEDS_THREE)
    assert math.isnan(table.loc[("a", "e"), "spearman"])
    assert table.loc[("a", "e"), "note"] == "no variation across intermediates"


def test_by_target_prints_why_a_slope_is_missing():
    from analysis.models import two_stage_by_target

    # one target's cosines are all equal (up to float noise): no slope, and the table says why
    rows = [
        (name, 0, target, "xx", gain, d)
        for name, d, gain in (("i1", 0.2, 1.0), ("i2", 0.5, 2.0), ("i3", 0.9, 4.0))
        for target, d in (("a", d), ("b", 0.9135 + 1e-17 * (name == "i2")))
    ]
    gains = pd.DataFrame(
        rows, columns=["intermediate", "seed", "target_task", "language", "gain", "similarity"]
    )
    table = two_stage_by_target(gains, covariate="similarity").set_index("target_task")
    assert table.loc["a", "note"] == ""
    assert math.isnan(table.loc["b", "se"]) and math.isnan(table.loc["b", "slope"])
    assert table.loc["b", "note"] == "similarity does not vary across intermediates"

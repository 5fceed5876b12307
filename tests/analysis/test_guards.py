"""Guards of the statistics: designs too small for a model, bounded fits, one difficulty scale,
confounds through earlier stages, and report wording that holds only when its premise does."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

import analysis.mixed as mixed
from analysis.gains import difficulty_table, metric_floor, registry_confounds
from analysis.report import write_report
from analysis.results import ROW_DTYPES
from analysis.simulate import DEMO_ZERO_SHOT, simulate_gains, simulate_rows, write_run


def test_tiny_store_says_which_models_cannot_be_fitted(tmp_path):
    # 1 seed, 1 target, 2 languages (one zero-shot), 4 intermediates: 4 usable rows, one per
    # intermediate; used to run the optimizer for minutes at s2 = quad / 0
    rows = simulate_rows(
        np.random.default_rng(1), 0.0, 4, 1, targets=("nli",), languages=("en", "ov50"),
        tagging=(),
    )  # fmt: skip
    write_run(str(tmp_path / "run"), rows, status={"errored": {}, "skipped": {}})
    write_report(str(tmp_path / "run"))
    md = (tmp_path / "run" / "report.md").read_text()
    assert "over 4 intermediates, t(2) = " in md  # the headline is still there
    mixed_part = md.split("## Mixed model")[1]
    assert (
        "Not fitted: no random effect can be estimated: random intercept for target_task "
        "dropped: only one level" in mixed_part
    )
    assert "4 levels for 4 rows leave it inseparable from the residual" in mixed_part
    assert "- random slope: not fitted, a random slope by target needs 2 or more targets" in md
    assert "over 1 seed, 1 target and 1 zero-shot language (ov50;" in md


def test_two_intermediates_refused_by_the_mixed_model():
    gains = simulate_gains(np.random.default_rng(2), 0.0, 2, 3, DEMO_ZERO_SHOT)
    fit = mixed.fit_lmm(gains)
    assert not fit.ok
    assert fit.reason == (
        "difficulty varies only between intermediates and the model needs at least 3 (found 2)"
    )


def test_a_fit_out_of_time_says_so(monkeypatch):
    monkeypatch.setattr(mixed, "FIT_SECONDS", 0.0)
    fit = mixed.fit_lmm(simulate_gains(np.random.default_rng(3), 0.0, 6, 2, DEMO_ZERO_SHOT))
    assert not fit.ok
    assert fit.reason.startswith("every optimizer failed: ")
    assert "exact L-BFGS-B: stopped, 0 s budget spent" in fit.reason
    sm = mixed.fit_lmm(
        simulate_gains(np.random.default_rng(3), 0.0, 6, 2, DEMO_ZERO_SHOT), backend="statsmodels"
    )
    assert not sm.ok
    assert "statsmodels lbfgs not tried: 0 s budget spent" in sm.reason


def test_difficulty_between_and_within_are_two_terms():
    # a lucky seed scores better (lower difficulty) and gains more; no effect between tasks
    gains = simulate_gains(
        np.random.default_rng(4), 0.0, 6, 4, DEMO_ZERO_SHOT, difficulty_noise=0.05,
        seed_quality=0.9, sd_intermediate_seed=2.0,
    )  # fmt: skip
    fit = mixed.fit_lmm(gains)
    assert {"difficulty", "difficulty_within"} <= set(fit.fixed.index)
    # within intermediates gain falls with difficulty (the planted confound, about
    # -0.9 * 2 / 0.05 = -36 points per unit) ...
    assert fit.term("difficulty_within", "estimate") < -15
    assert fit.term("difficulty_within", "p") < 0.01
    # ... while the between slope, the question, is not pulled along: about I - 2 df, no effect
    assert fit.term("difficulty", "df") < 10
    assert fit.term("difficulty", "p") > 0.05
    measured = mixed.fit_lmm(gains, mixed.ModelSpec("measured", decompose=False))
    assert measured.term("difficulty", "estimate") < fit.term("difficulty", "estimate")


def _intermediate(name, metric, score, chance=np.nan, majority=np.nan):
    # every column of the schema, typed: 0 / NaN / False / None by dtype
    blank = {"int64": 0, "float64": np.nan, "bool": False}
    row = {c: blank.get(t) for c, t in ROW_DTYPES.items()}
    row.update(
        kind="intermediate", intermediate=name, seed=0, language="en", split="dev",
        metric=metric, value=score, primary=True, chance=chance, majority=majority,
        train_size=100, n_examples=10, trial_key=name, encoder_sha="x", seconds=1.0,
    )  # fmt: skip
    return row


def test_one_difficulty_scale_for_every_metric_family():
    rows = pd.DataFrame(
        [
            _intermediate("acc_chance", "accuracy", 0.625, chance=0.25),
            _intermediate("acc_majority", "accuracy", 0.7, chance=1 / 3, majority=0.4),
            _intermediate("tagging", "f1", 0.8),
            _intermediate("qa", "f1_em", 0.6),
            _intermediate("ranking", "mrr@20", 0.3),
            _intermediate("below_floor", "accuracy", 0.2, chance=0.25),
        ]
    ).astype(ROW_DTYPES)
    table = difficulty_table(rows).set_index("intermediate")
    # by hand: 1 - (0.625 - 0.25) / 0.75 = 0.5; 1 - (0.7 - 0.4) / 0.6 = 0.5 (the majority
    # class, 0.4, beats a uniform third); F1, EM/F1 and MRR floors are 0: 1 - score
    assert table.loc["acc_chance", ["floor", "difficulty"]].tolist() == pytest.approx([0.25, 0.5])
    assert table.loc["acc_majority", "floor_kind"] == "majority"
    assert table.loc["acc_majority", "difficulty"] == pytest.approx(0.5)
    assert table.loc["tagging", "difficulty"] == pytest.approx(0.2)
    assert table.loc["qa", "difficulty"] == pytest.approx(0.4)
    assert table.loc["ranking", "difficulty"] == pytest.approx(0.7)
    assert table.loc["below_floor", "difficulty"] == 1.0  # clipped: the scale stays 0-1
    assert set(table["floor_kind"]) == {"chance", "majority", "zero"}
    assert metric_floor("map@20", np.nan, np.nan) == (0.0, "zero")


def test_confounds_through_a_targets_earlier_stages():
    from trainers.tasks import get_task, shares_training_data

    tatoeba = dataclasses.replace(get_task("tatoeba"), before=("xquad",))
    assert shares_training_data(get_task("squad"), tatoeba)  # xquad trains on SQuAD v1.1
    assert shares_training_data(get_task("squad_v2"), tatoeba)
    assert not shares_training_data(get_task("squad"), get_task("tatoeba"))  # no stage: none
    assert not shares_training_data(get_task("mnli"), tatoeba)
    # from a manifest, as configs/xtreme_r.yaml sets it (stores written before flagged neither)
    manifest = {"config": {"tasks": {"tatoeba": {"before": ["xquad"]}}}}
    pairs = registry_confounds(manifest, ["squad", "squad_v2", "mnli"], ["tatoeba", "xnli"])
    assert pairs == {("squad", "tatoeba"), ("squad_v2", "tatoeba"), ("mnli", "xnli")}
    assert registry_confounds({}, ["squad"], ["tatoeba"]) == set()


def test_every_metric_of_the_registry_has_a_stated_floor():
    from analysis.gains import ACCURACY_METRICS, ZERO_FLOOR_METRICS
    from trainers.metrics import METRICS

    names = {name for family in METRICS.values() for name in family}
    # a metric added to trainers.metrics must be given a floor here, deliberately
    assert names == ACCURACY_METRICS | ZERO_FLOOR_METRICS
    assert not ACCURACY_METRICS & ZERO_FLOOR_METRICS

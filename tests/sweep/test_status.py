"""`itx status` (sweep.status) on trials that finished without training: the children of an
unhealthy intermediate, a stage among them, are skipped, and read as skipped, not done."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from sweep.cli import app
from sweep.config import load_config
from sweep.plan import build_plan
from sweep.runner import write_manifest
from sweep.schema import ROWS
from sweep.status import describe_run
from sweep.store import ResultsStore
from sweep.trial import execute
from tests.conftest import result_row


def _tiny_run(root, tmp_path, targets: list[str]):
    """A tiny run's config, store (manifest written) and trials by label: one intermediate,
    no scratch control, no difficulty measures, health restarts on."""
    exp = load_config(
        root / "tests" / "fixtures" / "tiny.yaml",
        {
            "storage": str(tmp_path),
            "intermediates": ["topic_easy"],
            "targets": targets,
            "controls": {"scratch": False},
            "difficulty": {"pvi": False, "similarity": False},
            "health": {"policy": "restart", "restarts": 1},
        },
    )
    store = ResultsStore(exp.storage, exp.name)
    plan = build_plan(exp)
    write_manifest(exp, store, plan)
    return exp, store, {t.label: t for t in plan}


def test_children_of_an_unhealthy_intermediate_are_skipped_and_status_says_so(root, tmp_path):
    # xquad and mlqa share one SQuAD stage
    exp, store, by = _tiny_run(root, tmp_path, ["nli", "xquad", "mlqa"])
    inter = by["intermediate/topic_easy/seed=0"]
    # the intermediate finished unhealthy (as trainers.health would have judged it)
    unhealthy = result_row(
        kind="intermediate", intermediate="topic_easy", target_task=None, split="dev",
        trial_key=inter.key, healthy=False,
    )  # fmt: skip
    store.write_rows(inter, pd.DataFrame([unhealthy], columns=ROWS.names))
    stage, nli, xquad = (
        by["stage/xquad/topic_easy/seed=0"],
        by["target/topic_easy/nli/seed=0"],
        by["target/topic_easy/xquad/seed=0"],
    )
    assert stage.parent == inter.key and xquad.parent == stage.key
    for spec in (stage, nli, xquad):  # no training: each is skipped before it reads its parent
        assert execute(spec, exp, store).empty and store.is_done(spec)

    view = describe_run(store)
    assert view.stages["stage"]["skipped"] == 1 and view.stages["stage"]["done"] == 0
    assert view.stages["target"]["skipped"] == 2 and view.stages["target"]["done"] == 0
    assert view.stages["target"]["pending"] == 4  # mlqa and the three baselines
    unhealthy_reason = "intermediate topic_easy seed 0 is unhealthy (excluded)"
    assert view.skipped == {
        stage.label: unhealthy_reason,
        nli.label: unhealthy_reason,
        xquad.label: f"its stage was skipped ({unhealthy_reason})",
    }
    result = CliRunner().invoke(app, ["status", store.run])
    assert result.exit_code == 0, result.output
    assert f"skipped {nli.label}: {unhealthy_reason}" in " ".join(result.output.split())


def test_targets_after_a_stage_that_did_not_learn_are_skipped(root, tmp_path):
    # xquad and mlqa both evaluate the baseline's one SQuAD stage
    exp, store, by = _tiny_run(root, tmp_path, ["xquad", "mlqa"])
    stage = by["stage/xquad/none/seed=0"]
    xquad, mlqa = by["target/none/xquad/seed=0"], by["target/none/mlqa/seed=0"]
    assert xquad.parent == mlqa.parent == stage.key
    # the stage finished but did not learn (its rows as sweep.trial writes a stage's)
    degenerate = result_row(
        kind="stage", intermediate="none", target_task="xquad", split="dev", metric="f1",
        trial_key=stage.key, healthy=False,
    )  # fmt: skip
    store.write_rows(stage, pd.DataFrame([degenerate], columns=ROWS.names))
    for spec in (xquad, mlqa):  # skipped before loading the stage's model or any data
        assert execute(spec, exp, store).empty and store.is_done(spec)
    reason = "its stage xquad did not learn (unhealthy, excluded)"
    view = describe_run(store)
    assert view.skipped == {xquad.label: reason, mlqa.label: reason}
    # under `flag` the same stage is kept and its targets run: no skip reason
    flagged = exp.model_copy(update={"health": exp.health.model_copy(update={"policy": "flag"})})
    from sweep.trial import _skip_reason

    assert _skip_reason(xquad, flagged, store, "stage") is None

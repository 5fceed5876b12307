"""Trial health end to end without Ray: a planted fine-tune that cannot learn (every training and
dev label replaced at random) is detected, restarted with derived seeds, excluded, its children
skipped, the report says so; a kill during a restart resumes that restart."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.health import per_seed, trial_health
from analysis.report import write_report
from analysis.results import load_run
from sweep.config import load_config
from sweep.plan import build_plan
from sweep.runner import write_manifest
from sweep.store import ResultsStore
from sweep.trial import execute
from trainers.health import restart_seed
from trainers.loop import _Progress


def planted(root, tmp_path, name="run", noise=1.0):
    """The tiny sweep, one seed: topic_easy learnable or not (noise 1.0), one restart allowed."""
    return load_config(
        root / "tests" / "fixtures" / "tiny.yaml",
        {
            "storage": str(tmp_path),
            "name": name,
            "intermediates": ["topic_easy"],
            "targets": ["pos"],
            "languages": ["en", "ov80"],
            "data": {"train": 256, "dev": 100, "test": 32},
            "train": {"epochs": 3, "batch_size": 16, "checkpoint_every": 4},
            "tasks": {"topic_easy": {"noise": noise}},
            "difficulty": {"pvi": False, "similarity": False},
            "controls": {"scratch": False},
            "health": {"policy": "restart", "restarts": 1},
        },
    )


def specs(exp):
    plan = build_plan(exp)
    by = {(t.kind, t.intermediate, t.target_task): t for t in plan}
    return plan, by


def test_planted_failure_is_restarted_excluded_and_reported(root, tmp_path):
    exp = planted(root, tmp_path)
    plan, by = specs(exp)
    store = ResultsStore(exp.storage, exp.name)
    write_manifest(exp, store, plan)
    execute(plan[0], exp, store)  # the tiny pretrained encoder
    rows = execute(by["intermediate", "topic_easy", None], exp, store)
    assert not rows["healthy"].any() and set(rows["restarts"]) == {1}
    assert set(rows["restart_seed"]) == {restart_seed(0, 1)}  # the kept (last) attempt's seed
    child = execute(by["target", "topic_easy", "pos"], exp, store)
    assert child.empty  # never trained on the broken encoder
    baseline = execute(by["target", "none", "pos"], exp, store)

    run = load_run(str(tmp_path / exp.name))
    fits = run.fits.set_index(["trial_key", "attempt"])
    inter = by["intermediate", "topic_easy", None].key
    assert fits.loc[(inter, 0), "restart_seed"] == 0 and fits.loc[(inter, 1), "restart_seed"] > 0
    assert len(fits.loc[(inter, 0), "dev_curve"]) == 3  # one English dev score per epoch
    assert "not clearly above baseline" in fits.loc[(inter, 1), "reason"]
    health = trial_health(run).set_index("trial_key")
    assert health.loc[inter, "state"] == "excluded"
    assert health.loc[by["target", "topic_easy", "pos"].key, "state"] == "skipped"
    assert by["target", "topic_easy", "pos"].key in run.status["skipped"]
    # excluded from the rows every test uses; kept for the health section
    assert inter not in set(run.rows["trial_key"]) and inter in set(run.excluded["trial_key"])
    table = per_seed(run)
    assert table["intermediate"].tolist() == ["none"]
    en = baseline[(baseline["language"] == "en") & baseline["primary"]]["value"].iloc[0]
    assert table["en test"].iloc[0] == pytest.approx(en)

    write_report(str(tmp_path / exp.name))
    text = (tmp_path / exp.name / "report.md").read_text()
    head = text[: text.index("## Design")]
    assert "## Trial health" in head  # near the top, before the design
    assert "1 left out as unhealthy" in head or "2 left out as unhealthy" in head
    assert "intermediate topic_easy seed 0: excluded after 1 restart" in head


def test_a_kill_during_a_restart_resumes_that_restart(root, tmp_path, monkeypatch):
    reference = planted(root, tmp_path / "a")
    plan, by = specs(reference)
    store = ResultsStore(reference.storage, reference.name)
    execute(plan[0], reference, store)
    expected = execute(by["intermediate", "topic_easy", None], reference, store)

    exp = planted(root, tmp_path / "b")
    plan, by = specs(exp)
    store = ResultsStore(exp.storage, exp.name)
    execute(plan[0], exp, store)
    real_save = _Progress.save
    saves: list[int] = []

    def die_in_restart(self, accelerator, state_dir):
        real_save(self, accelerator, state_dir)
        if "restart-1" in state_dir.name:
            saves.append(self.step)
            if self.step >= 8:
                raise KeyboardInterrupt

    monkeypatch.setattr(_Progress, "save", die_in_restart)
    spec = by["intermediate", "topic_easy", None]
    with pytest.raises(KeyboardInterrupt):
        execute(spec, exp, store)
    monkeypatch.setattr(_Progress, "save", real_save)
    info: dict = {}
    rows = execute(spec, exp, store, info=info)
    assert info["resumed_part"] == "main-restart-1" and info["resumed_from_step"] == 8
    pd.testing.assert_frame_equal(
        rows.drop(columns=["seconds", "trial_key"]),
        expected.drop(columns=["seconds", "trial_key"]),
    )

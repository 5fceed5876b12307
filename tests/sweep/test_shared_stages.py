"""Shared stages and the null model as trials, executed without Ray on a tiny synthetic world:
XQuAD, MLQA and Tatoeba's `before: [xquad]` read one SQuAD fine-tune per (parent, seed), and
V-information is the intermediate's log2 probability minus its null trial's."""

from pathlib import Path

import pandas as pd
import pytest

from analysis.gains import difficulty_table
from sweep.config import load_config
from sweep.plan import build_plan
from sweep.store import ResultsStore
from sweep.trial import execute, file_sha

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def executed(root, tmp_path_factory):
    store_dir = tmp_path_factory.mktemp("shared")
    exp = load_config(
        root / "tests" / "fixtures" / "tiny.yaml",
        {
            "storage": str(store_dir),
            "intermediates": ["topic_easy"],
            "targets": ["xquad", "mlqa", "tatoeba"],
            "languages": ["en", "ov80", "fake"],
            "controls": {"scratch": False},
            "tasks": {"tatoeba": {"before": ["xquad"]}},
        },
    )
    store = ResultsStore(exp.storage, exp.name)
    trials = build_plan(exp)
    rows = {t.key: execute(t, exp, store) for t in trials}
    return exp, store, trials, rows


def test_one_squad_fine_tune_per_parent_serves_three_targets(executed):
    _exp, store, trials, rows = executed
    stages = [t for t in trials if t.kind == "stage"]
    assert len(stages) == 2  # parents none and topic_easy, seed 0: one SQuAD model each
    by_parent = {t.parent: t for t in stages}
    for stage in stages:
        children = [t for t in trials if t.parent == stage.key]
        assert sorted(t.target_task for t in children) == ["mlqa", "tatoeba", "xquad"]
        assert all(t.evaluate_only for t in children)
        sha = file_sha(Path(store.artifact(stage)) / "model.safetensors")
        for child in children:  # every child scored the stage's own weights
            assert set(rows[child.key]["encoder_sha"]) == {sha}
    assert len(by_parent) == 2


def test_v_information_is_the_intermediate_minus_its_null_trial(executed):
    _exp, _store, trials, rows = executed
    null = next(t for t in trials if t.kind == "null")
    inter = next(t for t in trials if t.kind == "intermediate")
    assert null.parent == inter.parent  # beside the intermediate, not after it
    assert all(t.parent != null.key for t in trials)  # no target waits for it
    table = pd.concat([rows[inter.key], rows[null.key]])
    model = table.loc[table.metric == "log2_prob", "value"].item()
    blank = table.loc[table.metric == "null_log2_prob", "value"].item()
    assert model < 0 and blank < 0  # log2 probabilities of the gold labels
    got = difficulty_table(table).v_information.item()
    assert got == pytest.approx(model - blank)


def test_baseline_targets_after_a_stage_still_get_their_task_embedding(executed):
    _exp, store, _trials, _rows = executed
    written = {p.stem for p in (Path(store.run) / "task_embeddings").glob("*.json")}
    assert written == {"topic_easy", "xquad", "mlqa", "tatoeba"}

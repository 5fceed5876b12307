"""A sweep on real rows through real Ray Tune: `data.source: hub` with `data.sources` pointing at
the XQuAD excerpt (tests/fixtures/real), its English part standing in for SQuAD, as the hub
serves it (stripped contexts and answers, answer_start kept) for the test languages."""

import os
from pathlib import Path

import pandas as pd
import pytest

from sweep.config import parse_config
from sweep.runner import run_sweep
from sweep.status import describe_run
from sweep.store import ResultsStore
from tests.trainers.real_helpers import REAL, XQUAD_LANGS, hub_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tiny_encoder, tmp_path_factory):
    base = tmp_path_factory.mktemp("real-sweep")
    served = hub_overrides(base / "hub")["xquad"]  # hub-shaped copies, as the hub serves them
    english = str(REAL / "xquad" / "xquad.en.json")
    exp = parse_config(
        {
            "name": "real",
            "storage": str(base / "store"),
            "encoder": {"name": str(tiny_encoder)},
            "model": {"max_length": 48},
            "intermediates": ["squad"],
            "targets": ["xquad"],
            "languages": list(XQUAD_LANGS),
            "seeds": [0],
            "data": {
                "source": "hub",
                "train": 24,
                "dev": 16,
                "test": 16,
                "sources": {
                    "squad": {
                        "path": "squad_json",
                        "data_files": {"train": english, "dev": english},
                    },
                    "xquad": served,
                },
            },
            "tasks": {"xquad": {"max_length": 48}, "squad": {"max_length": 48}},
            "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 16},
            "difficulty": {"pvi": False, "similarity": False},
            # 3 steps never learn: kept and flagged, so the squad encoder's target trains too
            # (under `restart` it is skipped as the child of an unhealthy intermediate)
            "health": {"policy": "flag"},
            "resources": {"cpu": 1, "pretrain_cpu": 1, "max_concurrent_trials": 2, "num_cpus": 2},
        }
    )
    cwd = Path.cwd()
    os.chdir(base)
    try:
        done = run_sweep(exp, verbose=0)
    finally:
        os.chdir(cwd)
    return exp, done


def test_the_real_sweep_finishes_and_scores_every_language(sweep):
    exp, done = sweep
    assert done.errored == {} and done.skipped == {}
    store = ResultsStore(exp.storage, exp.name)
    table = describe_run(store).stages
    assert table["intermediate"]["done"] == 1
    assert table["target"]["done"] == table["target"]["planned"] >= 2  # squad and none
    rows = pd.concat([pd.read_parquet(p) for p in Path(exp.run_dir).rglob("*.parquet")])
    test = rows[(rows["split"] == "test") & (rows["kind"] == "target")]
    assert set(test["language"]) == set(XQUAD_LANGS)
    # no answer lost to the hub's strip: every language keeps its 16 questions (data.test)
    assert set(test["n_examples"]) == {16}
    assert test["value"].between(0, 1).all()

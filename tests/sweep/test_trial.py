"""One trial's whole path without Ray (sweep.trial.execute: data, fine-tune, difficulty, rows),
pinned across commits like the loop's golden numbers (tests/trainers/test_loop.py)."""

from __future__ import annotations

import pytest

from sweep.config import load_config
from sweep.plan import build_plan
from sweep.store import ResultsStore
from sweep.trial import execute


def test_golden_rows_of_the_tiny_sweep_seed_0(root, tmp_path):
    """Produced by executing this config's plan in order (execute sets one thread) and printing
    each trial's rows, at commit 4fb0d2a (before trainers.data and trainers.finetune) and after
    that refactor, with identical output:
      PYTHONPATH=$PWD .venv/bin/python -c "from pathlib import Path; from sweep.config import
      load_config; from sweep.plan import build_plan; from sweep.store import ResultsStore;
      from sweep.trial import execute; e = load_config(Path('tests/fixtures/tiny.yaml'),
      {'storage': '/tmp/g', 'intermediates': ['topic_easy'], 'targets': ['nli'], 'controls':
      {'scratch': False}, 'train': {'epochs': 3, 'batch_size': 16, 'lr': 1e-3}}); s =
      ResultsStore(e.storage, e.name); [print(t.label, execute(t, e, s).to_string()) for t in
      build_plan(e)]"
      intermediate/topic_easy: accuracy 0.1875 (6/32), log2_prob -2.996292, 12 steps, best
      epoch 0, loss 2.078525 -> 2.073298; null/topic_easy: null_log2_prob -2.996323, loss
      2.078887 -> 2.073695; target/none/nli: test accuracy 0.40625 (13/32) in en, ov80, fake,
      English dev 0.3125 (10/32), loss 1.097645 -> 1.095584.
    The tiny encoder does not learn in 12 steps (accuracy at the majority label): what is pinned
    is the path, so the tolerances are one example of a 32-example set and 1e-3 on a loss or
    a mean log2 probability.
    """
    exp = load_config(
        root / "tests" / "fixtures" / "tiny.yaml",
        {
            "storage": str(tmp_path),
            "intermediates": ["topic_easy"],
            "targets": ["nli"],
            "controls": {"scratch": False},
            "train": {"epochs": 3, "batch_size": 16, "lr": 1e-3},
        },
    )
    store = ResultsStore(exp.storage, exp.name)
    by = {t.label: t for t in build_plan(exp)}
    execute(by["pretrain"], exp, store)

    inter = execute(by["intermediate/topic_easy/seed=0"], exp, store).set_index("metric")
    assert set(inter["steps"]) == {12} and set(inter["best_epoch"]) == {0}
    assert inter.loc["accuracy", "value"] == pytest.approx(6 / 32, abs=1 / 32)
    assert inter.loc["accuracy", "n_examples"] == 32
    assert inter.loc["log2_prob", "value"] == pytest.approx(-2.996292, abs=1e-3)
    assert inter.loc["accuracy", "loss_start"] == pytest.approx(2.078525, abs=1e-3)
    assert inter.loc["accuracy", "loss_end"] == pytest.approx(2.073298, abs=1e-3)

    null = execute(by["null/topic_easy/seed=0"], exp, store)
    assert list(null["metric"]) == ["null_log2_prob"] and not null["primary"].any()
    assert null["value"].iloc[0] == pytest.approx(-2.996323, abs=1e-3)
    assert null["loss_end"].iloc[0] == pytest.approx(2.073695, abs=1e-3)

    target = execute(by["target/none/nli/seed=0"], exp, store).set_index("language")
    assert sorted(target.index) == ["en", "fake", "ov80"] and set(target["n_examples"]) == {32}
    for lang in ("en", "ov80", "fake"):
        assert target.loc[lang, "value"] == pytest.approx(13 / 32, abs=1 / 32)
    assert list(target["dev_score"]) == pytest.approx([10 / 32] * 3, abs=1 / 32)
    assert target.loc["en", "loss_start"] == pytest.approx(1.097645, abs=1e-3)
    assert target.loc["en", "loss_end"] == pytest.approx(1.095584, abs=1e-3)

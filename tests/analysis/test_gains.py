"""Difficulty, paired gains and baseline tables on hand-made rows."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.gains import baseline_table, difficulty_table, gain_table
from analysis.results import ROW_DTYPES


def row(**values):
    base = {
        "kind": "target",
        "intermediate": "none",
        "seed": 0,
        "target_task": "nli",
        "language": "ov50",
        "split": "test",
        "metric": "accuracy",
        "value": 0.5,
        "n_examples": 100,
        "primary": True,
        "chance": 1 / 3,
        "majority": 0.34,
        "train_size": 1000,
        "trial_key": "k",
        "encoder_sha": "s",
        "seconds": 1.0,
        "shared_training_data": False,
    }
    base.update(values)
    return base


def frame(*rows):
    return pd.DataFrame(list(rows))[list(ROW_DTYPES)].astype(ROW_DTYPES)


def intermediate(name, seed, score, chance=0.25):
    return row(
        kind="intermediate",
        intermediate=name,
        seed=seed,
        target_task=None,
        language="en",
        split="dev",
        value=score,
        chance=chance,
        majority=np.nan,
    )


def test_difficulty_golden():
    rows = frame(
        intermediate("A", 0, 0.7),  # 1 - (0.7 - 0.25) / 0.75 = 1 - 0.6 = 0.4
        intermediate("A", 1, 0.25),  # at chance: 1
        intermediate("B", 0, 0.8, chance=np.nan),  # f1, no chance: 1 - 0.8 = 0.2
        row(intermediate="A", seed=0, value=0.9),  # a target row: ignored
    )
    table = difficulty_table(rows)
    assert table["difficulty"].tolist() == pytest.approx([0.4, 1.0, 0.2])
    assert table[["intermediate", "seed"]].values.tolist() == [["A", 0], ["A", 1], ["B", 0]]


def test_gain_pairs_with_the_same_seeds_baseline():
    rows = frame(
        intermediate("A", 0, 0.7),
        intermediate("A", 1, 0.55),
        row(intermediate="none", seed=0, value=0.50),
        row(intermediate="none", seed=1, value=0.70),
        row(intermediate="A", seed=0, value=0.55),
        row(intermediate="A", seed=1, value=0.72),
        row(intermediate="scratch", seed=0, value=0.36),
    )
    gains = gain_table(rows)
    # Same-seed pairing: 100 * (0.55 - 0.50) = 5 and 100 * (0.72 - 0.70) = 2. Pairing with the
    # mean baseline 0.60 would give -5 and 12.
    assert gains["gain"].tolist() == pytest.approx([5.0, 2.0])
    assert gains["baseline"].tolist() == pytest.approx([0.50, 0.70])
    assert gains["difficulty"].tolist() == pytest.approx([0.4, 0.6])
    assert set(gains["intermediate"]) == {"A"}  # neither the baseline nor the control


def test_gain_without_baseline_is_nan_not_dropped():
    rows = frame(
        row(intermediate="none", seed=0, value=0.5),
        row(intermediate="A", seed=0, value=0.6),
        row(intermediate="A", seed=1, value=0.6),
    )
    gains = gain_table(rows).set_index("seed")
    assert gains.loc[0, "gain"] == pytest.approx(10.0)
    assert math.isnan(gains.loc[1, "gain"])
    assert gains["difficulty"].isna().all()  # no intermediate rows in this store


def test_gain_metric_choice():
    rows = frame(
        row(target_task="pos", metric="f1", chance=np.nan, value=0.4),
        row(target_task="pos", metric="token_accuracy", primary=False, value=0.6),
        row(intermediate="A", target_task="pos", metric="f1", chance=np.nan, value=0.5),
        row(intermediate="A", target_task="pos", metric="token_accuracy", primary=False, value=0.8),
    )
    assert gain_table(rows)["gain"].tolist() == pytest.approx([10.0])
    assert gain_table(rows, "token_accuracy")["gain"].tolist() == pytest.approx([20.0])


def test_baseline_table_columns_and_points():
    rows = frame(
        row(intermediate="none", seed=0, value=0.50),
        row(intermediate="none", seed=1, value=0.70),
        row(intermediate="scratch", seed=0, value=0.36),
        row(intermediate="B", seed=0, value=0.62),
        row(intermediate="A", seed=0, value=0.64),
    )
    table = baseline_table(rows)
    assert list(table.columns) == [
        "target_task",
        "language",
        "chance",
        "majority",
        "scratch",
        "none",
        "A",
        "B",
    ]
    assert table.iloc[0, 2:].tolist() == pytest.approx([100 / 3, 34, 36, 60, 64, 62])


def test_empty_rows_give_empty_tables():
    rows = frame(row()).iloc[0:0]
    assert difficulty_table(rows).empty
    assert gain_table(rows).empty
    assert baseline_table(rows).empty

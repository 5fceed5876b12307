"""Difficulty, paired gains and baseline tables on hand-made rows."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.gains import (
    baseline_table,
    difficulty_table,
    gain_table,
    shared_pairs,
    similarity_table,
    task_categories,
    xtreme_table,
)
from analysis.results import OPTIONAL_COLUMNS, ROW_DTYPES


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
        **OPTIONAL_COLUMNS,  # the fine-tune's columns: a healthy fit
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


def test_difficulty_measures_golden():
    rows = frame(
        {**intermediate("A", 0, 0.7), "train_size": 1000},
        {**intermediate("A", 0, 1.25), "metric": "v_information", "primary": False},
        {**intermediate("A", 1, 0.25), "train_size": 1000},  # this seed recorded no V-info
        {**intermediate("B", 0, 0.8, chance=np.nan), "metric": "f1", "train_size": 50},
        {**intermediate("B", 0, 0.5), "metric": "v_information", "primary": False},
    )
    manifest = {"config": {"difficulty": {"external": {"A": 0.3, "Z": 0.9}}}}
    table = difficulty_table(rows, manifest)
    assert table[["intermediate", "seed"]].values.tolist() == [["A", 0], ["A", 1], ["B", 0]]
    # the V-information row is not the primary metric: difficulty as before
    assert table["difficulty"].tolist() == pytest.approx([0.4, 1.0, 0.2])
    assert table["train_size"].tolist() == [1000, 1000, 50]
    # ln 1000 = 6.907755, ln 50 = 3.912023
    assert table["log_train_size"].tolist() == pytest.approx([6.907755, 6.907755, 3.912023])
    assert table["v_information"].tolist() == pytest.approx([1.25, np.nan, 0.5], nan_ok=True)
    assert table["external"].tolist() == pytest.approx([0.3, 0.3, np.nan], nan_ok=True)
    without = difficulty_table(rows)  # old callers: no manifest, external unknown
    assert without["external"].isna().all()
    assert without["v_information"].tolist() == pytest.approx([1.25, np.nan, 0.5], nan_ok=True)


def test_similarity_table_cosines_by_hand():
    embeddings = {"A": [1.0, 0.0], "B": [0.0, 2.0], "x": [1.0, 1.0], "y": [-3.0, 0.0]}
    table = similarity_table(embeddings, ["A", "B", "C"], ["x", "y"])
    # cos(A, x) = 1 / sqrt(2) = 0.7071; cos(A, y) = -1; cos(B, x) = 2 / (2 sqrt 2); cos(B, y) = 0
    assert table[["intermediate", "target_task"]].values.tolist() == [
        ["A", "x"],
        ["A", "y"],
        ["B", "x"],
        ["B", "y"],
    ]  # C has no embedding: no rows, not NaN rows
    assert table["similarity"].tolist() == pytest.approx([0.70710678, -1.0, 0.70710678, 0.0])
    # centred on the mean of A, B, x, y = (-0.25, 0.75): A' = (1.25, -0.75), B' = (0.25, 1.25),
    # x' = (1.25, 0.25), y' = (-2.75, -0.75); cos(A', x') = 1.375 / sqrt(2.125 * 1.625) = 0.73994,
    # cos(A', y') = -2.875 / sqrt(2.125 * 8.125) = -0.6919, cos(B', x') = 0.625 / 1.625 = 0.3846,
    # cos(B', y') = -1.625 / sqrt(1.625 * 8.125) = -1 / sqrt(5) = -0.4472
    assert table["similarity_centred"].tolist() == pytest.approx(
        [0.739940, -0.691905, 0.384615, -0.447214], abs=1e-6
    )
    empty = similarity_table({}, ["A"], ["x"])
    assert empty.empty
    assert list(empty.columns) == [
        "intermediate",
        "target_task",
        "similarity",
        "similarity_centred",
    ]
    alone = similarity_table({"A": [1.0, 0.0], "x": [1.0, 1.0], "z": [1.0]}, ["A"], ["x", "z"])
    assert alone["target_task"].tolist() == ["x"]  # z has another length: dropped, not compared
    assert alone["similarity_centred"].tolist() == pytest.approx([-1.0])  # A' = -x' about the mean


def test_gain_table_flags_shared_training_data():
    rows = frame(
        row(intermediate="none", seed=0, value=0.5),
        row(intermediate="none", seed=0, target_task="qa", value=0.4),
        row(intermediate="A", seed=0, value=0.6),
        row(intermediate="A", seed=0, target_task="qa", value=0.9, shared_training_data=True),
    )
    gains = gain_table(rows)
    assert gains[["target_task", "shared_training_data"]].values.tolist() == [
        ["nli", False],
        ["qa", True],
    ]
    assert shared_pairs(gains).values.tolist() == [["A", "qa"]]


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


def test_xtreme_table_both_averages_by_hand_zero_shot_and_as_published():
    """Five targets in four categories (`newtask` registered later: its category comes from the
    manifest); `int` lacks newtask, so it has no averages."""
    values = {  # (task, seed): {language: value}
        ("xnli", 0): {"en": 0.9, "de": 0.7},
        ("xnli", 1): {"en": 0.9, "de": 0.5},
        ("xcopa", 0): {"en": 0.8, "de": 0.8},
        ("udpos", 0): {"en": 0.8, "de": 0.8},
        ("xquad", 0): {"en": 1.0, "de": 0.4},
        ("newtask", 0): {"de": 0.2},  # no English test set, like Tatoeba
    }
    rows = [
        row(target_task=task, seed=seed, language=lang, value=value)
        for (task, seed), by_lang in values.items()
        for lang, value in by_lang.items()
    ]
    rows += [row(intermediate="int", target_task="xnli", language="de", value=0.1)]
    rows += [row(target_task="xnli", language="de", value=0.0, primary=False)]  # not primary
    manifest = {"tasks": {"newtask": {"category": "retrieval"}}}
    categories = task_categories(manifest, ["xnli", "xcopa", "udpos", "xquad", "newtask"])
    assert categories == {
        "xnli": "classification",  # from the registry: not in this manifest
        "xcopa": "classification",
        "udpos": "structured_prediction",
        "xquad": "qa",
        "newtask": "retrieval",
    }
    assert task_categories({}, ["newtask"]) == {"newtask": "other"}

    zero_shot = xtreme_table(frame(*rows), categories).set_index("encoder")
    # de only: xnli (0.7 + 0.5) / 2 = 60, xcopa 80, udpos 80, xquad 40, newtask 20
    assert zero_shot.loc["none", "xnli (classification)"] == pytest.approx(60.0)
    # category means 70, 80, 40, 20 -> 52.5; over tasks 280 / 5 = 56
    assert zero_shot.loc["none", "avg (mean of category means)"] == pytest.approx(52.5)
    assert zero_shot.loc["none", "avg (mean over tasks)"] == pytest.approx(56.0)
    assert np.isnan(zero_shot.loc["int", "avg (mean of category means)"])
    assert list(zero_shot.index) == ["none", "int"]

    published = xtreme_table(frame(*rows), categories, exclude=None).set_index("encoder")
    # en included: xnli (0.8 + 0.7) / 2 = 75, xcopa 80, udpos 80, xquad 70, newtask 20
    assert published.loc["none", "xquad (qa)"] == pytest.approx(70.0)
    # category means 77.5, 80, 70, 20 -> 61.875; over tasks 325 / 5 = 65
    assert published.loc["none", "avg (mean of category means)"] == pytest.approx(61.875)
    assert published.loc["none", "avg (mean over tasks)"] == pytest.approx(65.0)

"""Malformed examples are counted per split and language, never silently dropped."""

import pytest

from tests.conftest import COUNTS
from trainers.quality import DataError, clean
from trainers.tasks import TaskData, get_task

NLI = get_task("nli")
POS = get_task("pos")


def good_pair(i):
    return {"text": f"premise {i}", "text_pair": f"hypothesis {i}", "label": i % 3}


def test_each_kind_of_bad_example_is_counted_by_reason():
    bad = [
        {"text": "", "text_pair": "h", "label": 0},
        {"text": "p", "text_pair": "   ", "label": 0},
        {"text": "p", "text_pair": "h", "label": 3},  # 3 labels: 0..2
        {"text": "p", "text_pair": "h", "label": -1},
        {"text": "p", "text_pair": "h", "label": "1"},
    ]
    COUNTS["malformed examples tried"] += len(bad)
    data = TaskData(
        train={"en": [good_pair(i) for i in range(95)] + bad},
        dev={},
        test={"de": [good_pair(0)]},
    )
    kept, report = clean(NLI, data, max_fraction=0.1)
    assert len(kept.train["en"]) == 95 and kept.test["de"] == data.test["de"]
    assert report == {
        "train/en": {
            "empty text": 1,
            "empty text_pair": 1,
            "label outside the label set": 2,
            "label not an integer": 1,
        }
    }


def test_tagging_problems():
    sentences = [
        {"words": [], "tags": []},
        {"words": ["a", " "], "tags": [0, 1]},
        {"words": ["a", "b"], "tags": [0]},
        {"words": ["a", "b"], "tags": [0, 6]},  # 6 tags: 0..5
        {"words": ["a", "b"], "tags": [0, 5]},
    ]
    COUNTS["malformed examples tried"] += 4
    kept, report = clean(POS, TaskData(train={}, dev={"en": sentences}), max_fraction=0.9)
    assert kept.dev["en"] == [sentences[-1]]
    assert report["dev/en"] == {
        "empty sentence": 1,
        "empty word": 1,
        "tags and words differ in length": 1,
        "label outside the label set": 1,
    }


def test_above_the_threshold_is_fatal_with_one_line():
    data = TaskData(
        train={"en": [good_pair(i) for i in range(9)] + [{"text": "", "label": 0}]}, dev={}
    )
    with pytest.raises(DataError) as info:
        clean(NLI, data, max_fraction=0.05)
    assert str(info.value) == (
        "nli train/en: 1 of 10 examples malformed (1 empty text); "
        "allowed at most 5.0% (data.max_malformed)"
    )
    kept, _ = clean(NLI, data, max_fraction=0.1)  # 10% is allowed: dropped and counted
    assert len(kept.train["en"]) == 9

"""The synthetic world teaches something: zero-shot transfer on the demo's own settings (half
its pretraining budget, see tests/conftest.py)."""

import pytest

from trainers.loop import train_and_evaluate
from trainers.synthetic import task_data
from trainers.tasks import SplitSizes, get_task
from trainers.world import World

pytestmark = pytest.mark.slow


def test_overlap_language_transfers_above_chance_and_above_no_overlap(demo_setup):
    exp, encoder = demo_setup  # the demo's settings, half its pretraining (tests/conftest.py)
    task = get_task("nli")
    data = task_data(
        World(exp.world),
        task,
        SplitSizes(exp.data.train, exp.data.dev, exp.data.test),
        ("en", "ov80", "fake"),
    )
    out = train_and_evaluate(
        task, data, encoder, exp.train, seed=0, max_length=exp.model.max_length
    )
    acc = {lang: scores["accuracy"] for lang, scores in out.test.items()}
    n = exp.data.test
    se = (task.chance * (1 - task.chance) / n) ** 0.5  # 0.021 at chance with 500 examples
    assert acc["en"] > task.chance + 10 * se, acc  # it learned the task at all
    assert acc["ov80"] > task.chance + 5 * se, acc  # clearly above chance: ~0.44 or more
    assert acc["ov80"] > acc["fake"] + 3 * se * 2**0.5, acc  # and above the no-overlap language

"""Difficulty measures: V-information by hand, and a planted family ordered as planted."""

import math

import pytest
import torch

from trainers.difficulty import cosine, pointwise_v_information, v_information
from trainers.heads import EvalSet, get_format
from trainers.loop import train_and_evaluate
from trainers.synthetic import task_data
from trainers.tasks import SplitSizes, get_task
from trainers.world import World


def test_pvi_by_hand():
    # p(y|x) = 3/4 against a null model's 1/2: log2(1.5) = 0.585 bits; 1/8 vs 1/2: -2 bits
    pvi = pointwise_v_information([math.log2(0.75), -3.0], [-1.0, -1.0])
    assert pvi == pytest.approx([0.5849625, -2.0])
    assert v_information([math.log2(0.75), -3.0], [-1.0, -1.0]) == pytest.approx(-0.70751875)
    with pytest.raises(ValueError, match="equally long"):
        v_information([0.0], [0.0, 1.0])


class _FixedLogits(torch.nn.Module):
    """A classifier whose logits are given per input: row i of `table` for token id i + 10."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.tensor(table, dtype=torch.float)

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.table[input_ids[:, 1] - 10]})()


def test_pvi_through_the_format_matches_a_hand_computation():
    """Two examples, gold 0 and 1. Model logits [ln 3, 0] -> p(0) = 3/4, and [0, ln 7] -> p(1) =
    7/8; the null model gives 1/2 to both labels. PVI = log2(1.5) and log2(1.75)."""
    task = get_task("sst2")
    fmt = get_format(task.format)
    features = [{"input_ids": [0, 10, 2], "labels": 0}, {"input_ids": [0, 11, 2], "labels": 1}]

    def collate(rows):
        return {
            "input_ids": torch.tensor([r["input_ids"] for r in rows]),
            "labels": torch.tensor([r["labels"] for r in rows]),
        }

    data = EvalSet(features, [{}, {}], collate)
    model = _FixedLogits([[math.log(3), 0.0], [0.0, math.log(7)]])
    null = _FixedLogits([[0.0, 0.0], [0.0, 0.0]])
    got = fmt.gold_log2_probs(task, model, data, 8, "cpu")
    assert got == pytest.approx([math.log2(0.75), math.log2(0.875)])
    pvi = pointwise_v_information(got, fmt.gold_log2_probs(task, null, data, 8, "cpu"))
    assert pvi == pytest.approx([math.log2(1.5), math.log2(1.75)])


def test_cosine_by_hand():
    assert cosine([1, 0], [1, 1]) == pytest.approx(1 / math.sqrt(2))


@pytest.mark.slow
def test_measured_difficulty_orders_a_planted_family(demo_setup):
    """topic_easy/mid/hard: same inputs and size, 0/25/50% label noise, on the demo's settings
    (half its pretraining, see tests/conftest.py). Both the dev score and the V-information must
    fall in that order."""
    exp, encoder = demo_setup  # the transfer test uses the same encoder: built once
    world = World(exp.world)
    sizes = SplitSizes(exp.data.train, exp.data.dev, 10)
    measured = {}
    for name in ("topic_easy", "topic_mid", "topic_hard"):
        task = get_task(name)
        data = task_data(world, task, sizes, ())
        fmt = get_format(task.format)
        run = {"seed": 0, "max_length": exp.model.max_length, "progress_bar": False}
        outcome = train_and_evaluate(task, data, encoder, exp.train, **run)
        null = train_and_evaluate(task, data, encoder, exp.train, blank_inputs=True, **run)
        v_info = v_information(
            fmt.gold_log2_probs(task, outcome.model, outcome.dev_set, 64, "cpu"),
            fmt.gold_log2_probs(task, null.model, null.dev_set, 64, "cpu"),
        )
        measured[name] = (outcome.dev["accuracy"], v_info)
    scores, infos = zip(*measured.values(), strict=True)
    assert scores[0] > scores[1] > scores[2], measured
    assert infos[0] > infos[1] > infos[2], measured
    assert infos[0] > 0.5, measured  # the clean task carries real usable information (bits)

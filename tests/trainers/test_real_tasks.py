"""Every real task through the one loop from its hand-written hub-schema fixture: the real
loader, one tiny training step, the official metrics. Offline: fixtures stand in for the hub."""

import math

import pytest

from sweep.config import parse_config
from sweep.trial import load_data
from tests.trainers.test_sources import REQUESTED, fixture_overrides
from trainers.heads import get_format
from trainers.loop import train_and_evaluate
from trainers.metrics import METRICS
from trainers.settings import TrainConfig
from trainers.sources import load_task_data
from trainers.tasks import PHANG_INTERMEDIATES, TASKS, get_task

SOURCED = sorted(name for name, task in TASKS.items() if task.source)
TRAIN = TrainConfig(epochs=1, batch_size=64, eval_batch_size=16)


@pytest.fixture(scope="module")
def overrides(tmp_path_factory):
    return fixture_overrides(tmp_path_factory.mktemp("hf-datasets"))


@pytest.mark.parametrize("name", SOURCED)
def test_real_task_loads_trains_one_step_and_scores(name, overrides, tiny_encoder):
    task, data = load_task_data(get_task(name), REQUESTED.get(name, ()), None, 0, overrides)
    outcome = train_and_evaluate(
        task, data, tiny_encoder, TRAIN, seed=0, max_length=48, progress_bar=False
    )
    family = METRICS[task.metric_family]
    if get_format(task.format).trainable:
        assert outcome.steps >= 1 and set(outcome.dev) == set(family)
        assert outcome.n_dev == len(data.dev["en"])
    if task.role == "target":
        expected = [lang for lang in REQUESTED[name] if lang in task.languages]
        assert sorted(outcome.test) == sorted(expected) and expected
        for scores in outcome.test.values():
            assert set(scores) == set(family)
            assert all(0.0 <= v <= 1.0 and not math.isnan(v) for v in scores.values())


def test_every_intermediate_of_a_sweep_sees_the_same_n_distinct_examples(overrides):
    """Size matching: `data.train: N` gives each intermediate exactly N distinct training
    examples, drawn by the seed, whatever the task's own size (2 to 14 rows in the fixtures)."""
    intermediates = [*PHANG_INTERMEDIATES, "siqa", "sst2", "boolq", "rte"]
    exp = parse_config(
        {
            "name": "sized",
            "encoder": {"name": "FacebookAI/xlm-roberta-base"},
            "intermediates": intermediates,
            "targets": ["xnli"],
            "languages": ["all"],
            "seeds": [0],
            "data": {
                "source": "hub",
                "train_size": 2,
                "dev": None,
                "test": None,
                "sources": overrides,
            },
        }
    )
    seen = {}
    for name in intermediates:
        _, data = load_data(exp, exp.task(name), 0, ())
        train = data.train["en"]
        seen[name] = len({repr(sorted(e.items())) for e in train})
        assert len(train) == 2
    assert set(seen.values()) == {2}, seen
    assert len(seen) == 13
    first = load_data(exp, exp.task("anli_plus"), 0, ())[1].train["en"]
    again = load_data(exp, exp.task("anli_plus"), 0, ())[1].train["en"]
    other = load_data(exp, exp.task("anli_plus"), 1, ())[1].train["en"]
    assert first == again and first != other  # fixed by seed, and the seed matters


def test_a_mixture_samples_its_members_into_one_training_set(overrides):
    exp = parse_config(
        {
            "name": "mixed",
            "encoder": {"name": "FacebookAI/xlm-roberta-base"},
            "intermediates": ["nli_mix"],
            "mixtures": {"nli_mix": {"tasks": ["mnli", "anli_plus"], "temperature": 1}},
            "targets": ["xnli"],
            "languages": ["all"],
            "seeds": [0],
            "data": {"source": "hub", "train": 4, "dev": None, "test": None, "sources": overrides},
        }
    )
    task, data = load_data(exp, exp.task("nli_mix"), 0, ())
    mnli = load_data(exp, exp.task("mnli"), 0, ())[1].train["en"]
    train = data.train["en"]
    assert task.name == "nli_mix" and len(train) == 4
    assert len({repr(sorted(e.items())) for e in train}) == 4
    # each member gives its size-matched N (4); equal sizes at temperature 1 draw 2 from each
    # (ANLI+ contains MNLI rows too, so at least 2 are MNLI's)
    assert sum(1 for e in train if e in mnli) >= 2
    assert len(data.dev["en"]) == sum(
        len(load_data(exp, exp.task(n), 0, ())[1].dev["en"]) for n in ("mnli", "anli_plus")
    )


def test_the_preflight_tries_every_member_of_a_mixture(overrides, tmp_path):
    from sweep.runner import check_data
    from trainers.sources import DataUnavailable

    def study(sources: dict):
        return parse_config(
            {
                "name": "mixed",
                "encoder": {"name": "FacebookAI/xlm-roberta-base"},
                "intermediates": ["nli_mix"],
                "mixtures": {"nli_mix": {"tasks": ["mnli", "anli_plus"]}},
                "targets": ["xnli"],
                "languages": ["de"],
                "seeds": [0],
                "data": {
                    "source": "hub",
                    "train": None,
                    "dev": None,
                    "test": None,
                    "sources": sources,
                },
            }
        )

    check_data(study(overrides))  # every fixture is there: nothing raised
    gone = {"path": "json", "data_files": {"train": str(tmp_path / "gone.jsonl")}}
    with pytest.raises(DataUnavailable, match="'mnli'"):
        check_data(study({**overrides, "mnli": gone}))

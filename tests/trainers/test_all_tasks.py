"""Every synthetic task through the one loop: its head trains, its metric family scores it.

One tiny run per task (a few steps on a seconds-scale encoder): the point is that each format's
features, loss, decoding and metric fit together, and that scores are real fractions.
"""

import math

import pytest

from tests.conftest import tiny_settings
from trainers.encoder import load_tokenizer
from trainers.heads import get_format
from trainers.loop import train_and_evaluate
from trainers.metrics import METRICS, primary_metric
from trainers.settings import TrainConfig
from trainers.synthetic import task_data
from trainers.tasks import TASKS, SplitSizes, get_task
from trainers.world import World

WORLD, MODEL, _ = tiny_settings()
TRAIN = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16)
LANGUAGES = ("en", "ov80", "fake")
SYNTHETIC = sorted(name for name, task in TASKS.items() if task.synthetic)


@pytest.fixture(scope="module")
def world():
    return World(WORLD)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_task_trains_and_scores_with_its_official_metrics(name, world, tiny_encoder):
    task = get_task(name)
    data = task_data(world, task, SplitSizes(16, 8, 8), LANGUAGES)
    outcome = train_and_evaluate(
        task, data, tiny_encoder, TRAIN, seed=0, max_length=MODEL.max_length, progress_bar=False
    )
    family = METRICS[task.metric_family]
    fmt = get_format(task.format)
    trains = fmt.trainable
    if trains:  # one epoch of batches of 8 features (QA: one feature per context window)
        features = fmt.train_features(task, load_tokenizer(tiny_encoder), data.train["en"], 48)
        assert outcome.steps == math.ceil(len(features) / 8) >= 2
    else:
        assert outcome.steps == 0
    if trains:
        assert set(outcome.dev) == set(family) and outcome.n_dev == 8
    if task.role == "target":
        assert set(outcome.test) == set(task.evaluates(LANGUAGES))
        for lang, scores in outcome.test.items():
            assert set(scores) == set(family)
            assert all(0.0 <= v <= 1.0 and not math.isnan(v) for v in scores.values()), scores
            assert outcome.n_test[lang] == 8
    assert primary_metric(task.metric_family) in (outcome.dev or next(iter(outcome.test.values())))


def test_tatoeba_has_no_english_test_set(world):
    data = task_data(world, get_task("tatoeba"), SplitSizes(16, 8, 8), LANGUAGES)
    assert set(data.test) == {"ov80", "fake"}


def test_an_earlier_stage_hands_its_whole_model_on_within_a_format(world, tiny_encoder):
    """XCOPA's recipe: SIQA first (3 choices), then COPA (2) on the same multiple-choice head."""
    siqa, xcopa = get_task("siqa"), get_task("xcopa")
    first = train_and_evaluate(
        siqa,
        task_data(world, siqa, SplitSizes(16, 8, 8), ("en",)),
        tiny_encoder,
        TRAIN,
        seed=0,
        max_length=MODEL.max_length,
        progress_bar=False,
    )
    trained = {k: v.clone() for k, v in first.model.state_dict().items()}
    second = train_and_evaluate(
        xcopa,
        task_data(world, xcopa, SplitSizes(16, 8, 8), LANGUAGES),
        tiny_encoder,
        TrainConfig(epochs=1, batch_size=8, lr=1e-12),  # a step that cannot move the weights
        seed=0,
        max_length=MODEL.max_length,
        progress_bar=False,
        init_model=first.model,
    )
    after = second.model.state_dict()
    assert second.model is first.model  # same head class: continued, not rebuilt
    assert all((after[k] - trained[k]).abs().max() < 1e-6 for k in trained)


def test_a_stage_of_another_format_hands_on_its_encoder_only(world, tiny_encoder):
    """Tatoeba scored from a QA-trained encoder (the XTREME-R baseline recipe)."""
    squad = get_task("squad")
    first = train_and_evaluate(
        squad,
        task_data(world, squad, SplitSizes(16, 8, 8), ("en",)),
        tiny_encoder,
        TRAIN,
        seed=0,
        max_length=MODEL.max_length,
        progress_bar=False,
    )
    tatoeba = get_task("tatoeba")
    second = train_and_evaluate(
        tatoeba,
        task_data(world, tatoeba, SplitSizes(16, 8, 8), LANGUAGES),
        tiny_encoder,
        TRAIN,
        seed=0,
        max_length=MODEL.max_length,
        progress_bar=False,
        init_model=first.model,
    )
    encoder = first.model.base_model.state_dict()
    for key, value in second.model.state_dict().items():
        assert (value == encoder[key]).all(), key


def test_shared_training_data_flags_the_squad_confound():
    from trainers.tasks import shares_training_data

    squad = get_task("squad")
    assert all(shares_training_data(squad, get_task(t)) for t in ("xquad", "mlqa", "lareqa"))
    assert shares_training_data(get_task("squad_v2"), get_task("xquad"))  # v2 contains v1.1
    assert shares_training_data(get_task("mnli"), get_task("xnli"))
    assert shares_training_data(get_task("siqa"), get_task("xcopa"))  # XCOPA's first stage
    assert not shares_training_data(squad, get_task("tydiqa"))
    assert not shares_training_data(get_task("topic_easy"), get_task("xnli"))


def test_synthetic_tasks_share_training_data_exactly_when_they_declare_it(world):
    def split(name, which):
        return task_data(world, get_task(name), SplitSizes(8, 8, 8), ("en",)).split(which)["en"]

    assert split("xquad", "train") == split("mlqa", "train") == split("squad", "train")  # SQuAD
    assert split("xquad", "train") != split("tydiqa", "train")  # TyDiQA trains on its own
    assert split("xquad", "test") != split("mlqa", "test")  # each target its own test set

import numpy as np
import pytest

from trainers.synthetic import synthetic_split, task_data
from trainers.tasks import SplitSizes, get_task
from trainers.world import World, WorldConfig


@pytest.fixture(scope="module")
def world():
    return World(WorldConfig(sentences_per_language=200))


def test_lexical_overlap_is_graded_as_configured(world):
    english = [w for words in world.lexicons["en"].values() for w in words]
    for lang, overlap in (("ov80", 0.8), ("ov50", 0.5), ("fake", 1.0)):
        words = [w for group in world.lexicons[lang].values() for w in group]
        shared = np.mean([a == b for a, b in zip(english, words, strict=True)])
        if lang == "fake":  # same words, another script: nothing is spelled alike
            assert shared == 0.0
            assert all(not (set(w) & set("abcdefghijklmnopqrstuvwxyz")) for w in words)
        else:  # a Bernoulli(overlap) draw per word over 228 words: within 4 standard errors
            se = np.sqrt(overlap * (1 - overlap) / len(words))
            assert abs(shared - overlap) < 4 * se


def test_sov_language_puts_the_verb_last(world):
    clause = world.sample_clause(np.random.default_rng(3))
    en_tags = [t for _, t in world.realize(clause, "en")]
    sov_tags = [t for _, t in world.realize(clause, "sov50")]
    assert sov_tags[-1] == "VERB"
    assert en_tags[-1] != "VERB"
    assert sorted(en_tags) == sorted(sov_tags)


def test_monolingual_corpora_are_not_parallel(world):
    en = world.corpus("en", 50, seed=0)
    ov80 = world.corpus("ov80", 50, seed=0)
    # parallel text would give the same word count sentence by sentence
    same_length = np.mean([len(a.split()) == len(b.split()) for a, b in zip(en, ov80, strict=True)])
    assert same_length < 0.6


def test_evaluation_sets_are_parallel_and_labels_shared(world):
    task = get_task("nli")
    en = synthetic_split(world, task, "test", "en", 20)
    fake = synthetic_split(world, task, "test", "fake", 20)
    assert [e["label"] for e in en] == [e["label"] for e in fake]
    assert en[0]["text"] != fake[0]["text"]


def test_intermediates_differ_only_in_planted_label_noise(world):
    easy = synthetic_split(world, get_task("topic_easy"), "train", "en", 400)
    hard = synthetic_split(world, get_task("topic_hard"), "train", "en", 400)
    assert [e["text"] for e in easy] == [e["text"] for e in hard]  # same inputs, same size
    changed = np.mean([a["label"] != b["label"] for a, b in zip(easy, hard, strict=True)])
    # noise 0.5 redraws half the labels uniformly over 8 classes: 0.5 * 7/8 = 0.4375 change
    assert abs(changed - 0.4375) < 4 * np.sqrt(0.4375 * 0.5625 / 400)


def test_task_data_has_english_train_dev_and_every_test_language(world):
    data = task_data(world, get_task("pos"), SplitSizes(10, 5, 7), ("en", "ov80", "fake"))
    assert list(data.train) == ["en"] and list(data.dev) == ["en"]
    assert {lang: len(v) for lang, v in data.test.items()} == {"en": 7, "ov80": 7, "fake": 7}


def test_unknown_task_suggests_the_closest():
    with pytest.raises(KeyError, match="did you mean 'nli'"):
        get_task("nil", "target")

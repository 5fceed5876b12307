"""Multi-task intermediates: tempered rates by hand, distinct examples, fixed by seed; the
mixture as one head and its data."""

import pytest

from trainers.mixing import (
    Mixture,
    members_of,
    mix,
    mixed_data,
    mixture_counts,
    mixture_task,
)
from trainers.tasks import TaskData, get_task


def test_proportional_and_tempered_counts_by_hand():
    sizes = {"a": 100, "b": 900}
    assert mixture_counts(sizes, 100, temperature=1) == {"a": 10, "b": 90}
    # T = 2: rates ~ sqrt(size) = 10 : 30
    assert mixture_counts(sizes, 100, temperature=2) == {"a": 25, "b": 75}
    # a large temperature approaches uniform
    assert mixture_counts(sizes, 100, temperature=100) == {"a": 49, "b": 51}


def test_a_small_task_gives_all_it_has_and_the_rest_goes_elsewhere():
    assert mixture_counts({"a": 5, "b": 1000}, 100, temperature=100) == {"a": 5, "b": 95}


def test_mix_draws_distinct_examples_fixed_by_seed():
    parts = {"a": [("a", i) for i in range(50)], "b": [("b", i) for i in range(150)]}
    mixed = mix(parts, 40, temperature=1, seed=3)
    assert len(mixed) == len(set(mixed)) == 40
    assert sum(1 for name, _ in mixed if name == "a") == 10
    assert mix(parts, 40, temperature=1, seed=3) == mixed
    assert mix(parts, 40, temperature=1, seed=4) != mixed
    assert sorted(mix(parts, None, 1, 0)) == sorted(parts["a"] + parts["b"])


def test_asking_more_than_there_is_fails_clearly():
    with pytest.raises(ValueError, match="200 available"):
        mixture_counts({"a": 50, "b": 150}, 201, 1)


def test_a_mixtures_data_is_its_members_training_sets_sampled_and_their_dev_sets_whole():
    def part(name, n_train, n_dev):
        return TaskData(
            train={"en": [(name, "train", i) for i in range(n_train)]},
            dev={"en": [(name, "dev", i) for i in range(n_dev)]},
            test={"de": [(name, "test", 0)]},  # a member's test split is never the mixture's
        )

    parts = {"b": part("b", 900, 3), "a": part("a", 100, 2)}
    data = mixed_data(parts, 100, temperature=2, seed=0)
    drawn = [name for name, _, _ in data.train["en"]]
    assert (drawn.count("a"), drawn.count("b")) == (25, 75)  # as the counts by hand above
    assert data.dev["en"] == [*parts["a"].dev["en"], *parts["b"].dev["en"]]  # in name order
    assert data.test == {} and data.pools == {}


def test_a_mixture_is_one_head_with_every_members_training_sets():
    mnli, anli = get_task("mnli"), get_task("anli_plus")
    task = mixture_task("nli_mix", [mnli, anli])
    assert (task.name, task.format, task.labels) == ("nli_mix", mnli.format, mnli.labels)
    assert task.train_data == tuple(sorted({*mnli.train_data, *anli.train_data}))
    assert task.source == "" and task.synthetic == "" and task.noise == 0.0
    assert members_of("nli_mix", {"nli_mix": Mixture(tasks=("mnli", "anli_plus"))}) == (
        "mnli",
        "anli_plus",
    )
    assert members_of("mnli", {}) == ("mnli",)

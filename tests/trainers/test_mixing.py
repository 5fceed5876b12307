"""Multi-task intermediates: tempered rates by hand, distinct examples, fixed by seed."""

import pytest

from trainers.mixing import mix, mixture_counts


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

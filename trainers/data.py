"""A trial's data: a task's examples from its real source or the synthetic world, or a mixture's
sampled union of its members' examples; size-matched by the study's split sizes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from trainers.mixing import Mixture, mixed_data
from trainers.tasks import Task, TaskData
from trainers.world import WorldConfig


@dataclass(frozen=True)
class DataSource:
    """Where a study's examples come from and how many (sweep.trial builds it from the config).

    `train` is the same N for every task, drawn by the trial seed (None: each training set
    whole, real data only); `dev` and `test` keep the first N. `tasks` holds every mixture
    member with the study's options applied (its noise decides its synthetic labels)."""

    source: Literal["synthetic", "hub"]
    train: int | None
    dev: int | None
    test: int | None
    world: WorldConfig | None = None  # the synthetic world
    overrides: Mapping[str, Any] = field(default_factory=dict)  # data.sources (real data)
    mixtures: Mapping[str, Mixture] = field(default_factory=dict)
    tasks: Mapping[str, Task] = field(default_factory=dict)  # mixture members, by name


def load_data(
    where: DataSource, task: Task, seed: int, languages: tuple[str, ...] = ()
) -> tuple[Task, TaskData]:
    """A task's data for one trial: English train and dev, the test split of each of
    `languages` the task evaluates (targets only).

    Returns the task too: real data can complete it (CCG's tag set comes from its training data).
    """
    mixture = where.mixtures.get(task.name)
    if mixture is not None:
        parts = {name: load_data(where, where.tasks[name], seed)[1] for name in mixture.tasks}
        return task, mixed_data(parts, where.train, mixture.temperature, seed)
    if where.source == "hub":
        from trainers.sources import load_task_data

        return load_task_data(
            task,
            languages,
            train_size=where.train,
            seed=seed,
            overrides=dict(where.overrides),
            dev_size=where.dev,
            test_size=where.test,
        )
    from trainers.synthetic import task_data
    from trainers.tasks import SplitSizes
    from trainers.world import World

    if where.world is None:
        raise ValueError("synthetic data needs a world (DataSource.world)")
    sizes = SplitSizes(where.train, where.dev, where.test)
    return task, task_data(World(where.world), task, sizes, languages)

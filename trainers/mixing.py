"""Mixtures, in one place: a multi-task intermediate that trains one head on examples sampled
from several registered tasks of that head (config `mixtures: {name: {tasks, temperature}}`).

Here are the config entry (`Mixture`; sweep.config checks its names and that its tasks share
a head), the registered tasks a name stands for (`members_of`), the mixture as a task, its data
identity and the sampling. Rates follow the multi-task literature (e.g. T5, XTREME's multi-task
baselines): task i is drawn with probability proportional to n_i ** (1 / T). T = 1 is
proportional (examples-proportional mixing); a large T approaches uniform over tasks, so small
tasks are not drowned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trainers.tasks import Task, TaskData


class Mixture(BaseModel):
    """A multi-task intermediate: its tasks share one head; examples are sampled per task
    proportionally to size (temperature 1) or with rates ~ size**(1/temperature)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tasks: tuple[str, ...] = Field(min_length=2)
    temperature: float = Field(1.0, ge=1, le=100)  # 1: proportional; large: uniform over tasks


def members_of(name: str, mixtures: Mapping[str, Mixture]) -> tuple[str, ...]:
    """The registered tasks a training of `name` reads: a mixture's members, or `name` itself."""
    return mixtures[name].tasks if name in mixtures else (name,)


def mixture_identity(mixture: Mixture, member: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """What decides a mixture's training data (sweep.plan keys it): each member's data
    identity, given by `member`, and the temperature; the sizes are the plan's to add."""
    return {"mixture": [member(name) for name in mixture.tasks], "temperature": mixture.temperature}


def mixture_task(name: str, members: Sequence[Task]) -> Task:
    """The mixture as a task: its first member's head and metric, every member's training sets
    (the confound flag), no source or generator of its own (its data is its members')."""
    train_data = tuple(sorted({d for m in members for d in m.train_data}))
    return dataclasses.replace(
        members[0], name=name, source="", synthetic="", train_data=train_data, noise=0.0
    )


def mixed_data(
    parts: Mapping[str, TaskData], total: int | None, temperature: float, seed: int
) -> TaskData:
    """A mixture's data from its members': `total` English training examples sampled by the
    tempered rates (`mix`), every member's English dev set (in name order), no test split."""
    train = mix({n: d.train["en"] for n, d in parts.items()}, total, temperature, seed)
    dev = [e for name in sorted(parts) for e in parts[name].dev["en"]]
    return TaskData(train={"en": train}, dev={"en": dev})


def mixture_counts(sizes: dict[str, int], total: int, temperature: float) -> dict[str, int]:
    """Examples drawn from each task: `total` split by the tempered rates, capped at each task's
    size (a task cannot give more distinct examples than it has); the remainder is redistributed."""
    if temperature < 1:
        raise ValueError(f"mixture temperature must be >= 1, got {temperature}")
    if total > sum(sizes.values()):
        raise ValueError(f"mixture: {total} examples asked of {sum(sizes.values())} available")
    names = sorted(sizes)
    counts = dict.fromkeys(names, 0)
    left = total
    while left > 0:
        open_ = [n for n in names if counts[n] < sizes[n]]
        weights = np.array([sizes[n] ** (1 / temperature) for n in open_], float)
        share = weights / weights.sum() * left
        take = {
            n: min(sizes[n] - counts[n], int(np.floor(s)))
            for n, s in zip(open_, share, strict=True)
        }
        if not any(take.values()):  # the rounding remainder: one each, largest share first
            order = np.argsort(-share)
            take = {open_[i]: 1 for i in order[:left]}
        for name, k in take.items():
            counts[name] += k
        left = total - sum(counts.values())
    return counts


def mix(parts: dict[str, list], total: int | None, temperature: float, seed: int) -> list:
    """`total` examples (None: all of them) drawn without replacement from the parts by the
    tempered rates, shuffled together; fixed by `seed`."""
    sizes = {name: len(examples) for name, examples in parts.items()}
    counts = mixture_counts(sizes, sum(sizes.values()) if total is None else total, temperature)
    rng = np.random.default_rng(seed)
    mixed = []
    for name in sorted(parts):
        picked = rng.choice(sizes[name], size=counts[name], replace=False)
        mixed += [parts[name][i] for i in sorted(picked)]
    order = rng.permutation(len(mixed))
    return [mixed[i] for i in order]

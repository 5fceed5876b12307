"""Synthetic versions of every task format in the built-in world (`trainers.world`).

A task names its generator in `Task.synthetic`; the generator builds `n` examples of one split in
one language, shaped by the task's knobs (`noise`), never by the task's name. Concepts depend on
(world seed, generator, split) only, so evaluation sets are parallel across languages, like
XNLI's; the trial seed never changes data, only initialization and order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trainers.tasks import Example, SplitSizes, Task
from trainers.world import TAGS, Clause, World, _stable_int

# (world, task, rng, lang, n) -> n examples; rng is seeded by (world seed, generator, split)
SplitGenerator = Callable[[World, Task, np.random.Generator, str, int], list[Example]]
ClauseGenerator = Callable[[World, Task, Clause, np.random.Generator, str], Example]


def per_clause(make: ClauseGenerator) -> SplitGenerator:
    """A split generator from one that turns a single sampled clause into one example."""

    def generate(
        world: World, task: Task, rng: np.random.Generator, lang: str, n: int
    ) -> list[Example]:
        return [make(world, task, world.sample_clause(rng), rng, lang) for _ in range(n)]

    return generate


def _topic(
    world: World, task: Task, clause: Clause, rng: np.random.Generator, lang: str
) -> Example:
    words = [w for w, _ in world.realize(clause, lang)]
    return {"text": " ".join(words), "label": int(world.noun_category[clause.subj])}


def _nli(world: World, task: Task, clause: Clause, rng: np.random.Generator, lang: str) -> Example:
    """Premise: the clause. Hypothesis: the clause without modifiers (entailment), with negation
    flipped (contradiction) or with another object (neutral)."""
    label = int(rng.integers(3))
    core = Clause(subj=clause.subj, verb=clause.verb, obj=clause.obj, negated=clause.negated)
    if label == 1:
        other = int(rng.integers(world.sizes["noun"] - 1))
        core = Clause(core.subj, core.verb, other + (other >= core.obj), negated=core.negated)
    elif label == 2:
        core = Clause(core.subj, core.verb, core.obj, negated=not core.negated)
    premise = " ".join(w for w, _ in world.realize(clause, lang))
    hypothesis = " ".join(w for w, _ in world.realize(core, lang))
    return {"text": premise, "text_pair": hypothesis, "label": label}


def _pos(world: World, task: Task, clause: Clause, rng: np.random.Generator, lang: str) -> Example:
    words, tags = zip(*world.realize(clause, lang), strict=True)
    return {"words": list(words), "tags": [TAGS.index(t) for t in tags]}


GENERATORS: dict[str, SplitGenerator] = {
    "topic": per_clause(_topic),
    "nli": per_clause(_nli),
    "pos": per_clause(_pos),
}

# retrieval pools: (world, task, split, languages) -> [{"id", "text"}], shared by a split's queries
PoolGenerator = Callable[[World, Task, str, tuple[str, ...]], list[dict]]
POOLS: dict[str, PoolGenerator] = {}


def _split_rng(world: World, task: Task, split: str) -> np.random.Generator:
    return np.random.default_rng(
        [world.config.seed, _stable_int(task.synthetic), _stable_int(split)]
    )


def synthetic_split(world: World, task: Task, split: str, lang: str, n: int) -> list[Example]:
    """`n` examples of one split in one language.

    Label noise applies to English train and dev (what the intermediate model learns from and is
    selected on), at the same positions for every task of a generator and noise level.
    """
    if not task.synthetic:
        raise ValueError(f"task {task.name!r} has no synthetic version; use data.source: hub")
    examples = GENERATORS[task.synthetic](world, task, _split_rng(world, task, split), lang, n)
    if task.noise > 0 and split in ("train", "dev"):
        noise_rng = np.random.default_rng([world.config.seed, _stable_int(task.name), 7])
        for example in examples:
            if noise_rng.random() < task.noise:
                example["label"] = int(noise_rng.integers(len(task.labels)))
    return examples


def task_data(
    world: World, task: Task, sizes: SplitSizes, languages: tuple[str, ...]
) -> dict[str, dict]:
    """{split: {lang: examples}}: English train and dev; each evaluated language's test; and
    {"pools": {split: pool}} for retrieval generators that have a candidate pool."""
    data: dict[str, dict] = {
        "train": {"en": synthetic_split(world, task, "train", "en", sizes.train)},
        "dev": {"en": synthetic_split(world, task, "dev", "en", sizes.dev)},
        "test": {},
    }
    if task.role == "target":
        data["test"] = {
            lang: synthetic_split(world, task, "test", lang, sizes.test)
            for lang in task.evaluates(languages)
        }
    if task.synthetic in POOLS:
        data["pools"] = {
            split: POOLS[task.synthetic](world, task, split, languages) for split in ("dev", "test")
        }
    return data

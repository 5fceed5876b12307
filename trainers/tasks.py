"""Every task the sweep can use, one declarative entry each, and their synthetic data.

A task in an existing format is one `Task` entry. Its synthetic data comes from the generator
named in `synthetic`, shaped by the entry's knobs (`noise`), never by the task's name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from trainers.world import CATEGORIES, TAGS, Clause, World, _stable_int

Example = dict  # {"text", "text_pair"?, "label"} or {"words", "tags"}


@dataclass(frozen=True)
class Task:
    name: str
    role: Literal["intermediate", "target"]
    format: Literal["classification", "tagging"]  # picks head, collator and metric family
    labels: tuple[str, ...]
    synthetic: str  # generator in SYNTHETIC
    noise: float = 0.0  # share of training/dev labels replaced at random: the planted difficulty
    description: str = ""

    @property
    def chance(self) -> float:
        """Expected score of a uniform random guess on the primary metric (accuracy tasks)."""
        return 1 / len(self.labels)


NLI_LABELS = ("entailment", "neutral", "contradiction")

TASKS_LIST = (
    Task(
        name="topic_easy",
        role="intermediate",
        format="classification",
        labels=CATEGORIES,
        synthetic="topic",
        noise=0.0,
        description="category of the subject; clean labels",
    ),
    Task(
        name="topic_hard",
        role="intermediate",
        format="classification",
        labels=CATEGORIES,
        synthetic="topic",
        noise=0.5,
        description="category of the subject; half of the labels replaced at random",
    ),
    Task(
        name="nli",
        role="target",
        format="classification",
        labels=NLI_LABELS,
        synthetic="nli",
        description="XNLI-like sentence-pair inference",
    ),
    Task(
        name="pos",
        role="target",
        format="tagging",
        labels=TAGS,
        synthetic="pos",
        description="UD-POS-like part-of-speech tagging",
    ),
)


def _index(tasks: tuple[Task, ...]) -> dict[str, Task]:
    index: dict[str, Task] = {}
    for task in tasks:
        if task.name in index:
            raise ValueError(f"task {task.name!r} is registered twice")
        index[task.name] = task
    return index


TASKS = _index(TASKS_LIST)


def get_task(name: str, role: str | None = None) -> Task:
    """The registered task; a miss names the closest match."""
    pool = {n: t for n, t in TASKS.items() if role is None or t.role == role}
    if name not in pool:
        close = difflib.get_close_matches(name, pool, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(pool))}"
        raise KeyError(f"unknown {role or ''} task {name!r}{hint}".replace("  ", " "))
    return pool[name]


# ---- synthetic data ---------------------------------------------------------------------------

Generator = Callable[[World, Task, Clause, np.random.Generator, str], Example]


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


SYNTHETIC: dict[str, Generator] = {"topic": _topic, "nli": _nli, "pos": _pos}


@dataclass(frozen=True)
class SplitSizes:
    train: int
    dev: int
    test: int


def synthetic_split(world: World, task: Task, split: str, lang: str, n: int) -> list[Example]:
    """`n` examples of one split in one language.

    Concepts depend on (task, split) only, so evaluation sets are parallel across languages, like
    XNLI's; the trial seed never changes data, only initialization and order. Label noise applies to
    English train and dev (what the intermediate model learns from and is selected on).
    """
    rng = np.random.default_rng(
        [world.config.seed, _stable_int(task.synthetic), _stable_int(split)]
    )
    make = SYNTHETIC[task.synthetic]
    examples = [make(world, task, world.sample_clause(rng), rng, lang) for _ in range(n)]
    if task.noise > 0 and split in ("train", "dev"):
        noise_rng = np.random.default_rng([world.config.seed, _stable_int(task.name), 7])
        for example in examples:
            if noise_rng.random() < task.noise:
                example["label"] = int(noise_rng.integers(len(task.labels)))
    return examples


def task_data(
    world: World, task: Task, sizes: SplitSizes, languages: tuple[str, ...]
) -> dict[str, dict[str, list[Example]]]:
    """{split: {lang: examples}}: English train and dev; every language's test."""
    data = {
        "train": {"en": synthetic_split(world, task, "train", "en", sizes.train)},
        "dev": {"en": synthetic_split(world, task, "dev", "en", sizes.dev)},
        "test": {},
    }
    if task.role == "target":
        data["test"] = {
            lang: synthetic_split(world, task, "test", lang, sizes.test) for lang in languages
        }
    return data

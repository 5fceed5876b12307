"""The task registry is the one place per task: configs, plans, manifests, data, the simulation
tables and the docs checks all read it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from analysis.simulate import XTREME_R_ZERO_SHOT as SIMULATED
from sweep.config import parse_config
from sweep.plan import build_plan
from sweep.runner import _task_entries
from tests.conftest import tiny_settings
from trainers.loop import train_and_evaluate
from trainers.settings import TrainConfig
from trainers.sources import source_entries
from trainers.synthetic import task_data
from trainers.tasks import NLI_LABELS, TARGETS, TASKS, XTREME_R_LANGUAGES, SplitSizes, Task
from trainers.world import World

ROOT = Path(__file__).resolve().parents[2]


def undocumented(tasks: dict[str, Task]) -> list[str]:
    """Tasks the README does not name (as `name`), and sources docs/data.md has no table row for
    (`| name |`): what a new entry must add to the docs."""
    readme = (ROOT / "README.md").read_text()
    data_doc = (ROOT / "docs" / "data.md").read_text()
    missing = [f"README.md: {n}" for n in tasks if f"`{n}`" not in readme]
    sources = sorted({t.source for t in tasks.values() if t.source})
    missing += [
        f"docs/data.md: {s}"
        for s in sources
        if not re.search(rf"^\| {re.escape(s)} \|", data_doc, re.M)
    ]
    return missing


def test_readme_and_data_doc_name_every_task_and_source():
    assert undocumented(TASKS) == []
    assert {t.source for t in TASKS.values() if t.source} == set(source_entries())


def test_language_tables_are_read_off_the_entries():
    # the union of the targets' own lists: 50 languages (the XTREME-R paper's count)
    assert len(XTREME_R_LANGUAGES) == 50
    assert set(XTREME_R_LANGUAGES) == {lang for t in TARGETS for lang in t.languages}
    # the simulation's design: zero-shot languages, English excluded. The hand copy this replaced
    # had drifted (xquad 10, tatoeba 35); the registry says 11 and 41
    assert SIMULATED["xquad"] == 11 and SIMULATED["tatoeba"] == 41 and SIMULATED["xnli"] == 14
    assert set(SIMULATED) == {t.name for t in TARGETS if t.source}


TOY = Task(
    name="toy_nli",
    role="target",
    format="classification",  # an existing format: head, collator, loss, metric come with it
    labels=NLI_LABELS,
    category="classification",
    languages=("en", "de", "sw"),  # its real data set's languages (what `languages: [all]` means)
    synthetic="nli",  # its version in the built-in world
)


@pytest.fixture
def eleventh(monkeypatch):
    """The toy target registered the way an entry in trainers/tasks.py registers it."""
    monkeypatch.setitem(TASKS, TOY.name, TOY)
    return TOY


def test_an_eleventh_target_in_an_existing_format_is_one_entry(eleventh, tiny_encoder):
    # place 1 (the only one for the synthetic world): the entry. Configs validate it, plans count
    # it, the manifest describes it for the report, the world generates it, the loop trains it.
    exp = parse_config(
        {
            "name": "toy",
            "intermediates": ["topic_easy"],
            "targets": ["nli", "toy_nli"],
            "languages": ["en", "ov80", "fake"],
            "seeds": [0],
            "controls": {"scratch": False},
        }
    )
    targets = [t for t in build_plan(exp) if t.kind == "target"]
    assert sorted({t.target_task for t in targets}) == ["nli", "toy_nli"]
    assert len(targets) == 2 * 2  # (topic_easy + none) x 1 seed x 2 targets
    entry = _task_entries(exp)["toy_nli"]
    assert entry == {
        "role": "target",
        "category": "classification",
        "format": "classification",
        "metric": "",
        "languages": ("en", "ov80", "fake"),
    }
    world, model, _ = tiny_settings()
    data = task_data(World(world), eleventh, SplitSizes(32, 16, 16), ("en", "fake"))
    config = TrainConfig(epochs=1, batch_size=16)
    outcome = train_and_evaluate(
        eleventh, data, tiny_encoder, config, seed=0, max_length=model.max_length
    )
    assert outcome.steps == 2 and sorted(outcome.test) == ["en", "fake"]
    assert set(outcome.test["fake"]) == {"accuracy"}  # the format's metric family
    # places 2 and 3, which the docs check demands of every task with a real data set: a README
    # table row and a docs/data.md row for its source; with a real source also (4) its
    # trainers/sources.yaml entry and (5) tests/fixtures/hub/<source>/, which
    # tests/trainers/test_sources.py checks and reads (languages off the fixture file names)
    real = dataclasses.replace(eleventh, source="toy_nli")
    assert undocumented({**TASKS, real.name: real}) == [
        "README.md: toy_nli",
        "docs/data.md: toy_nli",
    ]

import dataclasses

import pytest
import yaml

import sweep.config
from sweep.config import parse_config
from sweep.plan import (
    BASELINE,
    LOG_PROB_FORMATS,
    TRAIN_IDENTITY_V1,
    TRAIN_NOT_IDENTITY,
    TRAINED_FORMATS,
    build_plan,
    train_identity,
    trainings,
)
from trainers.settings import TrainConfig
from trainers.tasks import Task, get_task

BASE = {
    "name": "p",
    "intermediates": ["topic_easy", "topic_hard"],
    "targets": ["nli", "pos"],
    "languages": ["en", "ov80", "fake"],
    "seeds": [0, 1, 2],
}


def test_one_intermediate_training_per_task_and_seed_never_per_target():
    trials = build_plan(parse_config(BASE))
    inter = [t for t in trials if t.kind == "intermediate"]
    assert len(inter) == 2 * 3  # intermediates x seeds, not x targets
    assert len({(t.intermediate, t.seed) for t in inter}) == 6
    targets = [t for t in trials if t.kind == "target"]
    assert len(targets) == (2 + 2) * 3 * 2  # (tasks + none + scratch) x seeds x targets
    assert len({t.key for t in trials}) == len(trials)


def test_parents_come_first_and_children_point_at_their_own_parent():
    trials = build_plan(parse_config(BASE))
    seen = set()
    by_key = {t.key: t for t in trials}
    for t in trials:
        assert t.parent is None or t.parent in seen
        seen.add(t.key)
        if t.kind == "target" and t.intermediate not in ("none", "scratch"):
            parent = by_key[t.parent]
            assert (parent.intermediate, parent.seed) == (t.intermediate, t.seed)
        if t.kind == "target" and t.intermediate in ("none", "scratch"):
            assert by_key[t.parent].kind == "pretrain"


def test_keys_are_content_hashes_shared_across_sweeps():
    a = {t.label: t.key for t in build_plan(parse_config(BASE))}
    b = {
        t.label: t.key
        for t in build_plan(parse_config({**BASE, "name": "other", "targets": ["pos"]}))
    }
    # another sweep with the same intermediate settings reuses the same encoders
    inter = [label for label in b if label.startswith("intermediate")]
    assert inter and all(a[label] == b[label] for label in inter)
    changed = {t.label: t.key for t in build_plan(parse_config({**BASE, "train": {"lr": 5e-4}}))}
    assert all(changed[label] != a[label] for label in inter)


# ---- identity: keys from an explicit, versioned dict of what decides a training -------------


def keys(raw: dict) -> dict[str, str]:
    return {t.label: t.key for t in build_plan(parse_config(raw))}


def reordered(value):
    """The same config with every mapping's keys in reverse order (as another YAML would)."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    return value


def test_editing_task_metadata_changes_no_key(monkeypatch):
    # free text and report metadata (the XTREME-R category; task descriptions were such text
    # before they became comments) decide no training
    before = keys(BASE)
    original = sweep.config.get_task

    def edited(name, role=None):
        task = original(name, role)
        return dataclasses.replace(task, category=task.category + " (edited)")

    monkeypatch.setattr(sweep.config, "get_task", edited)
    assert keys(BASE) == before


def test_adding_a_defaulted_field_to_task_or_train_settings_changes_no_key(monkeypatch):
    before = keys(BASE)
    original = sweep.config.get_task
    Grown = dataclasses.make_dataclass(
        "Task", [("new_knob", int, dataclasses.field(default=0))], bases=(Task,), frozen=True
    )

    def grown(name, role=None):
        return Grown(**dataclasses.asdict(original(name, role)))

    monkeypatch.setattr(sweep.config, "get_task", grown)
    assert keys(BASE) == before

    # settings models: a field added later enters the identity only when set away from its default
    class GrownTrain(TrainConfig):
        label_smoothing: float = 0.0

    base = TrainConfig()
    assert train_identity(GrownTrain()) == train_identity(base)
    assert train_identity(GrownTrain(label_smoothing=0.1)) != train_identity(base)


def test_every_train_setting_is_classified_for_the_identity():
    # a new TrainConfig field must be either in version 1's identity, declared as not deciding
    # a training, or (added later) enter keys only when set: this lists the first two
    assert set(TrainConfig.model_fields) >= TRAIN_IDENTITY_V1 | TRAIN_NOT_IDENTITY


def test_reordering_config_keys_changes_no_key():
    raw = {**BASE, "train": {"lr": 5e-4, "epochs": 2}, "data": {"train": 100, "dev": 50}}
    assert keys(reordered(raw)) == keys(raw)


def changed(raw: dict) -> set[str]:
    a, b = keys(BASE), keys(raw)
    assert a.keys() <= b.keys() or b.keys() <= a.keys()
    return {label for label in a.keys() & b.keys() if a[label] != b[label]}


def test_each_training_setting_changes_the_keys_it_should_and_no_others():
    every = set(keys(BASE))
    fine_tunes = {label for label in every if not label.startswith("pretrain")}
    targets = {label for label in every if label.startswith("target")}
    nli = {label for label in targets if "/nli/" in label}
    # a shared setting: every fine-tuning, never the pretrained encoder
    assert changed({**BASE, "train": {"lr": 5e-4}}) == fine_tunes
    # one task's setting: that task's trials only (nli targets under every parent)
    assert changed({**BASE, "tasks": {"nli": {"train": {"epochs": 2}}}}) == nli
    assert changed({**BASE, "tasks": {"nli": {"max_length": 32}}}) == nli
    # evaluation only: the targets, not the intermediates they read
    assert changed({**BASE, "data": {"test": 100}}) == targets
    # pretraining: everything below it
    assert changed({**BASE, "pretrain": {"steps": 10}}) == every
    # when state is saved decides no result
    assert changed({**BASE, "train": {"checkpoint_every": 7}}) == set()
    # the health rule decides which restart is kept: every fine-tuning; its defaults written
    # out change nothing
    assert changed({**BASE, "health": {"policy": "flag"}}) == fine_tunes
    assert changed({**BASE, "health": {"alpha": 0.05}}) == fine_tunes
    assert changed({**BASE, "health": {"policy": "restart", "restarts": 2}}) == set()
    # V-information off: the null trials go, nothing else changes
    off = keys({**BASE, "difficulty": {"pvi": False}})
    base = keys(BASE)
    assert {k for k in base if k.startswith("null")} == base.keys() - off.keys()
    assert all(base[label] == key for label, key in off.items())


def test_format_facts_of_the_plan_match_the_heads():
    from trainers.heads import FORMATS, Format

    assert {n for n, f in FORMATS.items() if f.trainable} == TRAINED_FORMATS
    overrides = {
        n for n, f in FORMATS.items() if type(f).gold_log2_probs is not Format.gold_log2_probs
    }
    assert overrides == LOG_PROB_FORMATS


# ---- identical trainings trained once; the null model beside its intermediate --------------


def test_xquad_mlqa_and_tatoebas_stage_share_one_squad_fine_tune(root):
    exp = sweep.config.load_config(root / "configs" / "xtreme_r.yaml")
    trials = build_plan(exp)
    by_key = {t.key: t for t in trials}
    parents = [BASELINE, *exp.intermediates]
    for seed in exp.seeds:
        for parent in parents:
            read = {
                t.target_task: t.parent
                for t in trials
                if t.kind == "target" and t.intermediate == parent and t.seed == seed
            }
            squad = by_key[read["xquad"]]
            assert squad.kind == "stage" and read["mlqa"] == read["tatoeba"] == squad.key
    # 14 parents x 3 seeds: 42 SQuAD stages instead of 126 trainings (84 saved), and 42 SIQA
    # stages of XCOPA
    stages = [t for t in trials if t.kind == "stage"]
    assert sorted({t.task for t in stages}) == ["siqa", "xquad"]
    assert len(stages) == 84
    assert trainings(exp, trials) == {"before": 531, "after": 447, "saved": 84}


def test_null_models_are_trials_beside_their_intermediate_off_every_target_path():
    exp = parse_config(BASE)
    trials = build_plan(exp)
    nulls = [t for t in trials if t.kind == "null"]
    assert len(nulls) == 2 * 3  # one per intermediate and seed
    by_key = {t.key: t for t in trials}
    for t in trials:
        node = t
        while node.parent is not None:  # no target descends from a null model
            node = by_key[node.parent]
            assert node.kind != "null"
    assert {by_key[n.parent].kind for n in nulls} == {"pretrain"}


@pytest.mark.parametrize("task", ["qqp", "squad"])
def test_null_model_only_for_formats_with_label_probabilities(task):
    fmt = get_task(task).format
    assert (fmt in LOG_PROB_FORMATS) == (task == "qqp")


def test_a_source_override_changes_the_keys_of_that_sources_trials_only(root):
    raw = yaml.safe_load((root / "configs" / "xtreme_r.yaml").read_text())
    base = {t.label: t.key for t in build_plan(parse_config(raw))}
    mirror = {"mnli": {"path": "json", "data_files": {"train": "/data/mnli/train.jsonl"}}}
    raw["data"] = {**raw["data"], "sources": mirror}
    moved = {t.label: t.key for t in build_plan(parse_config(raw))}
    changed = {label for label in base if base[label] != moved[label]}
    # the mnli intermediate, its null model and everything trained from it (stages, targets)
    assert changed and all("/mnli/" in label for label in changed)
    assert {label.split("/")[0] for label in changed} == {"intermediate", "null", "stage", "target"}

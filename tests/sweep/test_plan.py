from sweep.config import parse_config
from sweep.plan import build_plan

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

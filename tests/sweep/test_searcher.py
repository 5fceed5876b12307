"""The DAG searcher, driven directly through Tune's Searcher interface: no cluster."""

from ray.tune.search import Searcher

from sweep.config import parse_config
from sweep.plan import build_plan
from sweep.searcher import DagSearcher, chain_lengths

EXP = parse_config(
    {
        "name": "s",
        "intermediates": ["topic_easy", "topic_hard"],
        "targets": ["nli", "pos"],
        "languages": ["en", "ov80"],
        "seeds": [0],
        "difficulty": {"pvi": False},  # no null trials: release semantics only
    }
)


def make(done=frozenset(), limit=8):
    trials = build_plan(EXP)
    searcher = DagSearcher(trials, set(done), {"experiment": {}})
    assert searcher.set_max_concurrency(limit)  # we enforce it: Tune's limiter forgets errors
    return trials, searcher


def test_children_are_released_only_after_their_own_parent():
    trials, s = make()
    by_key = {t.key: t for t in trials}
    first = s.suggest("t0")
    assert first["spec"]["kind"] == "pretrain"
    assert s.suggest("t1") is None  # everything else waits on pretraining
    s.on_trial_complete("t0", {"done": 1})
    released = {}
    for i in range(1, 7):  # 2 intermediates + 4 none/scratch targets become ready together
        released[f"t{i}"] = s.suggest(f"t{i}")["spec"]
    kinds = sorted((r["kind"], r["intermediate"]) for r in released.values())
    assert kinds == [
        ("intermediate", "topic_easy"),
        ("intermediate", "topic_hard"),
        ("target", "none"),
        ("target", "none"),
        ("target", "scratch"),
        ("target", "scratch"),
    ]
    assert s.suggest("t7") is None  # intermediate children wait, no barrier for the rest
    easy = next(
        t
        for t, r in released.items()
        if r["intermediate"] == "topic_easy" and r["kind"] == "intermediate"
    )
    s.on_trial_complete(easy, {"done": 1})
    child = s.suggest("t7")["spec"]
    assert (
        child["intermediate"] == "topic_easy"
        and by_key[child["parent"]].key == released[easy]["key"]
    )


def test_concurrency_limit_is_enforced_by_the_searcher():
    _, s = make(limit=2)
    s.suggest("a")
    s.on_trial_complete("a", {"done": 1})
    assert s.suggest("b") is not None and s.suggest("c") is not None
    assert s.suggest("d") is None  # two running
    s.on_trial_complete("b", {"done": 1})
    assert s.suggest("d") is not None


def test_errored_parent_skips_its_children_and_the_rest_goes_on():
    _, s = make()
    s.suggest("p")
    s.on_trial_complete("p", {"done": 1})
    ids = {}
    for i in range(6):
        spec = s.suggest(f"x{i}")["spec"]
        ids[f"x{i}"] = spec
    hard = next(t for t, r in ids.items() if r["intermediate"] == "topic_hard")
    s.on_trial_complete(hard, error=True)
    assert set(s.errored) == {ids[hard]["key"]}
    assert len(s.skipped) == 2  # its nli and pos targets
    for t in ids:
        if t != hard:
            s.on_trial_complete(t, {"done": 1})
    rest = [s.suggest(f"y{i}") for i in range(3)]
    assert [r["spec"]["intermediate"] for r in rest[:2]] == ["topic_easy", "topic_easy"]
    s.on_trial_complete("y0", {"done": 1})
    s.on_trial_complete("y1", {"done": 1})
    assert s.suggest("z") == Searcher.FINISHED


def test_finished_trials_from_disk_are_never_issued():
    trials = build_plan(EXP)
    done = {t.key for t in trials if t.kind != "target"}
    _, s = make(done=done)
    issued = []
    while (r := s.suggest(f"t{len(issued)}")) not in (None, Searcher.FINISHED):
        issued.append(r["spec"])
    assert len(issued) == 8 and all(r["kind"] == "target" for r in issued)


def test_state_round_trips_through_json(tmp_path):
    _, s = make()
    s.suggest("a")
    s.on_trial_complete("a", {"done": 1})
    s.save(str(tmp_path / "state.json"))
    _, fresh = make()
    fresh.restore(str(tmp_path / "state.json"))
    assert fresh.done == s.done and [t.key for t in fresh.pending] == [t.key for t in s.pending]


def test_longest_remaining_chain_is_released_first():
    exp = parse_config({**EXP.model_dump(), "difficulty": {"pvi": True}})
    trials = build_plan(exp)
    cost = {}
    for t in trials:  # seconds: a slow hard intermediate, a mid-sized null model
        if t.kind == "intermediate":
            cost[t.key] = 10.0 if t.intermediate == "topic_hard" else 1.0
        else:
            cost[t.key] = {"pretrain": 3.0, "null": 5.0}.get(t.kind, 1.0)
    chain = chain_lengths(trials, cost)
    pre = trials[0].key
    assert chain[pre] == 3.0 + 10.0 + 1.0  # pretrain, topic_hard, one of its targets
    s = DagSearcher(trials, set(), {}, cost=cost)
    s.set_max_concurrency(1)
    order = []
    for i in range(4):
        spec = s.suggest(f"t{i}")["spec"]
        order.append((spec["kind"], spec["intermediate"]))
        s.on_trial_complete(f"t{i}", {"done": 1})
    # topic_hard heads the longest chain (11); then the null models (5) before topic_easy (2)
    assert order == [
        ("pretrain", None),
        ("intermediate", "topic_hard"),
        ("null", "topic_easy"),
        ("null", "topic_hard"),
    ]

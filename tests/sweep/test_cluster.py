"""Cluster scale: cluster.yaml validated offline, and an elastic sweep on a real multi-node Ray
cluster (ray.cluster_utils.Cluster on this machine) whose storage is a local S3 server."""

import copy
import logging
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import pytest
import ray
import yaml

from sweep.config import parse_config
from sweep.plan import build_plan
from sweep.runner import describe_run, run_sweep
from sweep.store import ResultsStore
from sweep.trial import execute
from tests.sweep.test_store import moto_s3

log = logging.getLogger(__name__)
LEGACY_KEYS = {"head_node", "worker_nodes", "min_workers", "initial_workers", "autoscaling_mode"}


# ---- cluster.yaml ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster_yaml(root):
    return yaml.safe_load((root / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_own_validation(cluster_yaml):
    util = pytest.importorskip("ray.autoscaler._private.util")  # private API; Ray is pinned
    prepared = util.prepare_config(copy.deepcopy(cluster_yaml))
    util.validate_config(prepared)  # raises on unknown keys and schema errors
    assert set(prepared["available_node_types"]) == {"head", "gpu_spot", "gpu_ondemand"}


def test_cluster_yaml_keeps_our_invariants(cluster_yaml):
    types = cluster_yaml["available_node_types"]
    head = types[cluster_yaml["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no trial can be placed on the head
    assert "--num-cpus=0" in " ".join(cluster_yaml["head_start_ray_commands"])
    spot, fallback = types["gpu_spot"], types["gpu_ondemand"]
    assert spot["min_workers"] == 0 and spot["resources"]["GPU"] == 1
    assert spot["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    assert fallback["resources"] == spot["resources"]
    assert "InstanceMarketOptions" not in fallback["node_config"]
    image = cluster_yaml["docker"]["image"]
    assert image.split(":")[1].startswith(f"{ray.__version__}-")
    assert not LEGACY_KEYS & set(cluster_yaml)
    assert cluster_yaml["provider"]["cache_stopped_nodes"] is False
    assert cluster_yaml["idle_timeout_minutes"] > 0
    assert not any(k.startswith("aws_") or "secret" in k.lower() for k in cluster_yaml["provider"])


def test_autoscaler_prefers_spot_and_falls_back_to_on_demand(cluster_yaml):
    util = pytest.importorskip("ray.autoscaler._private.util")
    sched = pytest.importorskip("ray.autoscaler._private.resource_demand_scheduler")
    tracker = pytest.importorskip("ray.autoscaler._private.node_provider_availability_tracker")
    types = util.prepare_config(copy.deepcopy(cluster_yaml))["available_node_types"]
    scorer = partial(
        sched._default_utilization_scorer,
        node_availability_summary=tracker.NodeAvailabilitySummary(node_availabilities={}),
    )
    demand = [{"CPU": 1, "GPU": 1}] * 3
    first, _ = sched.get_nodes_for(types, {}, "head", 10, demand, scorer)
    assert dict(first) == {"gpu_spot": 3}
    spot_full = {"gpu_spot": types["gpu_spot"]["max_workers"]}
    then, _ = sched.get_nodes_for(types, spot_full, "head", 10, demand, scorer)
    assert dict(then) == {"gpu_ondemand": 2}  # capped by its own max_workers


# ---- a real multi-node cluster ---------------------------------------------------------------
@pytest.fixture(scope="module")
def s3_endpoint():
    yield from moto_s3()


def elastic_config(root: Path, storage: str):
    raw = yaml.safe_load((root / "tests" / "fixtures" / "tiny.yaml").read_text())
    raw.update(
        name="elastic",
        storage=storage,
        intermediates=["topic_easy"],
        targets=["nli"],
        languages=["en"],
        controls={"scratch": False},
        data={"train": 2048, "dev": 32, "test": 32},  # 128 steps: long enough to kill mid-trial
        train={"epochs": 1, "batch_size": 16, "checkpoint_every": 8},
        resources={
            "cpu": 1,
            "pretrain_cpu": 1,
            "max_concurrent_trials": 2,
            "max_failures": 2,
            "state_upload_every_s": 0,  # every save up: the test kills after a pushed step 16
        },
    )
    return parse_config(raw)


def wait_for(what: str, check, timeout: float = 90.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow
def test_nodes_join_and_die_while_the_sweep_runs(root, s3_endpoint, tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    from tests.sweep.test_artifacts import leftovers

    private_tmp = tmp_path / "t"  # every node's processes: node-local folders land here
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/ray")  # Ray's default: its socket paths stay short
    monkeypatch.setattr(tempfile, "tempdir", None)
    exp = elastic_config(root, f"{s3_endpoint}/cluster")
    store = ResultsStore(exp.storage, exp.name)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False},  # like cluster.yaml's head
    )
    first = cluster.add_node(num_cpus=1)
    outcome: dict = {}
    sweep = threading.Thread(
        target=lambda: outcome.update(done=run_sweep(exp, address=cluster.address, verbose=0))
    )
    try:
        cluster.wait_for_nodes()
        sweep.start()

        def running_on(node_id: str) -> list[dict]:
            records = store.read_records().values()
            return [r for r in records if r["state"] == "running" and r["node_id"] == node_id]

        # pretrain done, two trials released, one CPU: one trial runs on `first`, one waits
        busy = wait_for(
            "a fine-tuning trial on the first node",
            lambda: [r for r in running_on(first.node_id) if r["kind"] != "pretrain"],
        )
        victim = busy[0]["key"]
        joined = cluster.add_node(num_cpus=1)  # from the main thread, as Cluster requires
        victim_spec = next(t for t in build_plan(exp) if t.key == victim)
        latest = f"{store.state_root(victim_spec)}/LATEST"

        def saved_step() -> int:
            if not store.exists(latest):
                return 0
            return int(store.read_bytes(latest).decode().removeprefix("v"))

        step_at_kill = wait_for("a pushed checkpoint", lambda: saved_step() >= 16, every=0.05)
        step_at_kill = saved_step()
        cluster.remove_node(first, allow_graceful=False)  # a preempted spot node
        killed = time.monotonic()
        cluster.add_node(num_cpus=1)  # the autoscaler's replacement
        resumed = wait_for(
            "the retry of the killed trial",
            lambda: (r := store.read_records().get(victim)) and r["attempt"] == 2 and r,
        )
        resume_seconds = time.monotonic() - killed
        sweep.join(timeout=240)
        assert not sweep.is_alive()
    finally:
        ray.shutdown()
        cluster.shutdown()

    result = outcome["done"]
    assert result.errored == {} and result.skipped == {}
    assert len(result.issued) == 4  # pretrain, topic_easy, none->nli, topic_easy->nli
    records = store.read_records()
    assert {r["state"] for r in records.values()} == {"done"}
    nodes = {r["node_id"] for r in records.values()}
    assert joined.node_id in nodes  # the node that joined mid-sweep ran trials
    final = records[victim]
    assert final["attempt"] == 2 and final["node_id"] == resumed["node_id"] != first.node_id
    # resumed from the checkpoint on the store, not from step 0 (and not past the kill)
    assert step_at_kill <= final["resumed_from_step"] < 128
    view = describe_run(store)
    assert view.stages["target"]["done"] == 2 and view.eta_seconds == 0.0
    assert sum(view.per_node.values()) == 4
    assert store.size("scratch") == 0  # resume state deleted after DONE
    assert leftovers(private_tmp) == []  # the killed node's state folder went with the retry
    cached = [p for p in (private_tmp / "itx-node" / "cache").iterdir() if p.is_dir()]
    assert len(cached) == 2  # the root and the intermediate encoder, once for all nodes here
    log.warning(
        "killed at saved step %d; retry started %.1f s after the kill, resumed from step %d",
        step_at_kill,
        resume_seconds,
        final["resumed_from_step"],
    )

    # the same trial, uninterrupted, same seed, on a fresh local root: identical metrics
    reference = ResultsStore(str(tmp_path / "ref"), exp.name)
    ref_exp = exp.model_copy(update={"storage": str(tmp_path / "ref")})
    plan = build_plan(exp)
    chain, parent = {victim}, victim_spec.parent
    while parent is not None:
        chain.add(parent)
        parent = next(t for t in plan if t.key == parent).parent
    for spec in plan:  # parents first
        if spec.key in chain:
            rows = execute(spec, ref_exp, reference)
    got = store.read_rows(victim_spec).sort_values(["language", "metric"]).reset_index(drop=True)
    rows = rows.sort_values(["language", "metric"]).reset_index(drop=True)
    assert got["value"].tolist() == rows["value"].tolist()
    assert got["encoder_sha"].tolist() == rows["encoder_sha"].tolist()

"""Cluster scale without AWS: cluster.yaml checked by Ray's own validation and scheduler, the
cluster-side checks of sweep/cluster.py and sweep/spot.py, and one slow test on Ray's real
autoscaler with its fake multi-node provider (tests/sweep/fake_nodes.py)."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import ray
import yaml

from sweep.cluster import (
    FORWARDED_VARS,
    SECRET_VARS,
    GPUUnavailable,
    NodeProbe,
    filesystem_of,
    judge,
    refuse_credentials_in_uri,
    require_gpu,
    runtime_env,
)
from sweep.config import load_config
from sweep.spot import SpotWatcher, deadline_of, instance_action
from sweep.store import StorageError
from sweep.trainable import trial_resources

log = logging.getLogger(__name__)
LEGACY_KEYS = {"head_node", "worker_nodes", "min_workers", "initial_workers", "autoscaling_mode"}
DLAMI = "resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/"


# ---- cluster.yaml ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster_yaml(root):
    return yaml.safe_load((root / "cluster.yaml").read_text())


@pytest.fixture(scope="module")
def node_types(cluster_yaml):
    """cluster.yaml's node types as Ray's AWS provider fills them before scheduling: CPUs and GPUs
    of the instance type, memory 70% of its RAM (instance data from moto's copy of AWS's)."""
    util = pytest.importorskip("ray.autoscaler._private.util")  # private API; Ray is pinned
    aws = pytest.importorskip("ray.autoscaler._private.aws.node_provider")
    moto = pytest.importorskip("moto")
    prepared = util.prepare_config(copy.deepcopy(cluster_yaml))
    keys = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        with moto.mock_aws():
            filled = aws.AWSNodeProvider.fillout_available_node_types_resources(prepared)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return filled["available_node_types"]


def test_cluster_yaml_passes_rays_own_validation(cluster_yaml):
    util = pytest.importorskip("ray.autoscaler._private.util")
    prepared = util.prepare_config(copy.deepcopy(cluster_yaml))
    util.validate_config(prepared)  # raises on unknown keys and schema errors
    assert set(prepared["available_node_types"]) == {"head", "gpu_spot", "gpu_ondemand"}


def test_aws_provider_advertises_70_percent_of_ram_as_memory(node_types):
    spot = node_types["gpu_spot"]["resources"]
    assert spot["CPU"] == 8 and spot["GPU"] == 1
    assert spot["memory"] == int(32768 * 2**20 * 0.7)  # g5.2xlarge: 32 GiB -> 22.4 GiB
    assert "memory" not in node_types["head"]["resources"]  # the head: CPU 0, nothing else
    assert node_types["head"]["resources"]["CPU"] == 0


def test_cluster_yaml_keeps_our_invariants(cluster_yaml, root):
    types = cluster_yaml["available_node_types"]
    head = types[cluster_yaml["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no trial can be placed on the head
    assert "--num-cpus=0" in " ".join(cluster_yaml["head_start_ray_commands"])
    spot, fallback = types["gpu_spot"], types["gpu_ondemand"]
    assert spot["min_workers"] == 0 and fallback["min_workers"] == 0
    assert spot["resources"]["GPU"] == 1 and fallback["resources"]["GPU"] == 1
    assert spot["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    assert "InstanceMarketOptions" not in fallback["node_config"]
    assert fallback["resources"] == {**spot["resources"], "ondemand": 1}  # the fallback marker
    assert spot["node_config"]["InstanceType"] == fallback["node_config"]["InstanceType"]
    # workers get their own profile: Ray attaches its default one to the head only
    for kind in (spot, fallback):
        assert kind["node_config"]["IamInstanceProfile"] == {"Name": "itx-worker"}
        assert kind["node_config"]["MetadataOptions"] == {"HttpTokens": "required"}
    assert "IamInstanceProfile" not in head["node_config"]  # Ray's ray-autoscaler-v1 there
    # one pinned image family on every node: the DLAMI with a driver for CUDA 12.8, or an AMI id
    for kind in types.values():
        image = kind["node_config"]["ImageId"]
        assert image.startswith(DLAMI) or re.fullmatch(r"ami-[0-9a-f]{8,17}", image), image
    image = cluster_yaml["docker"]["image"]
    assert image.split(":")[1].startswith(f"{ray.__version__}-")
    lines = (root / "constraints.txt").read_text().splitlines()
    pins = dict(line.split("==", 1) for line in lines if "==" in line)
    assert image.split(":")[1].split("-")[0] == pins["ray"]
    setup = " ".join(cluster_yaml["setup_commands"])
    assert "whl/cu128" in setup and "-c /home/ray/itx/constraints.txt" in setup
    start = " ".join(cluster_yaml["worker_start_ray_commands"])
    assert "ITX_SPOT_METADATA_URL=http://169.254.169.254" in start  # the spot watcher's source
    assert not LEGACY_KEYS & set(cluster_yaml)
    assert cluster_yaml["provider"]["cache_stopped_nodes"] is False
    assert cluster_yaml["idle_timeout_minutes"] > 0
    assert not any(k.startswith("aws_") or "secret" in k.lower() for k in cluster_yaml["provider"])
    assert cluster_yaml["max_workers"] == spot["max_workers"] + fallback["max_workers"]


def test_worker_policy_is_limited_to_the_bucket(root):
    policy = json.loads((root / "deploy" / "iam" / "worker-policy.json").read_text())
    resources = [s["Resource"] for s in policy["Statement"]]
    assert resources == ["arn:aws:s3:::BUCKET", "arn:aws:s3:::BUCKET/PREFIX/*"]
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert all(a.startswith("s3:") and "*" not in a for a in actions)
    assert {s["Effect"] for s in policy["Statement"]} == {"Allow"}
    head = json.loads((root / "deploy" / "iam" / "head-passrole-policy.json").read_text())
    assert "iam:PassRole" in head["Statement"][0]["Action"]
    assert all("itx-worker" in r for r in head["Statement"][0]["Resource"])


# ---- (a) every shipped config against every node type, through Ray's scheduler --------------
def demands(exp) -> dict[str, list[dict[str, float]]]:
    """What Tune asks the autoscaler for, per stage: one placement-group bundle per trial, at
    most max_concurrent_trials at once (the hub encoder is fetched by the driver: no trial)."""
    params = {"experiment": exp.model_dump(mode="json")}
    stages = {}
    kinds = (["pretrain"] if exp.encoder is None else []) + ["target"]
    for kind in kinds:
        request = trial_resources({**params, "spec": {"kind": kind}})
        bundle = {
            {"cpu": "CPU", "gpu": "GPU", "memory": "memory"}[k]: v for k, v in request.items()
        }
        stages[kind] = [bundle] * (1 if kind == "pretrain" else exp.resources.max_concurrent_trials)
    return stages


def schedule(node_types, wanted, existing=None):
    sched = pytest.importorskip("ray.autoscaler._private.resource_demand_scheduler")
    tracker = pytest.importorskip("ray.autoscaler._private.node_provider_availability_tracker")
    scorer = partial(
        sched._default_utilization_scorer,
        node_availability_summary=tracker.NodeAvailabilitySummary(node_availabilities={}),
    )
    launched, unfulfilled = sched.get_nodes_for(
        node_types, existing or {}, "head", 10, wanted, scorer
    )
    return dict(launched), len(unfulfilled)


def feasibility_table(node_types, configs) -> list[tuple[str, str, dict, int]]:
    rows = []
    for name, exp in configs.items():
        for stage, wanted in demands(exp).items():
            launched, unfulfilled = schedule(node_types, wanted)
            rows.append((name, f"{stage} x{len(wanted)}", launched, unfulfilled))
    return rows


def print_table(title, rows):
    lines = [title, f"  {'config':<22} {'demand':<12} {'gpu_spot':>8} {'gpu_ondemand':>12} unmet"]
    for name, stage, launched, unfulfilled in rows:
        lines.append(
            f"  {name:<22} {stage:<12} {launched.get('gpu_spot', 0):>8} "
            f"{launched.get('gpu_ondemand', 0):>12} {unfulfilled:>5}"
        )
    log.warning("%s", "\n".join(lines))


def test_every_shipped_config_fits_the_cluster_node_types(root, node_types):
    shipped = {p.name: load_config(p) for p in sorted((root / "configs").glob("*.yaml"))}
    assert set(shipped) == {"demo.yaml", "demo_full.yaml", "xtreme_r.yaml"}
    # before (as shipped until issue 17): 40 GiB per trial, 16 at once, the encoder a GPU trial
    before_exp = shipped["xtreme_r.yaml"].model_copy(
        update={
            "resources": shipped["xtreme_r.yaml"].resources.model_copy(
                update={"memory_gb": 40, "max_concurrent_trials": 16}
            )
        }
    )
    before = feasibility_table(node_types, {"xtreme_r.yaml (before)": before_exp})
    after = feasibility_table(node_types, shipped)
    print_table("before: config x demand -> nodes launched by Ray's scheduler", before)
    print_table("after:", after)
    assert before == [("xtreme_r.yaml (before)", "target x16", {}, 16)]  # nothing ever starts
    table = {(name, stage): (launched, unmet) for name, stage, launched, unmet in after}
    assert table == {
        ("demo.yaml", "pretrain x1"): ({"gpu_spot": 1}, 0),
        ("demo.yaml", "target x2"): ({"gpu_spot": 1}, 0),  # two 1-CPU trials share one node
        ("demo_full.yaml", "pretrain x1"): ({"gpu_spot": 1}, 0),
        ("demo_full.yaml", "target x2"): ({"gpu_spot": 1}, 0),
        ("xtreme_r.yaml", "target x10"): ({"gpu_spot": 8, "gpu_ondemand": 2}, 0),
    }
    # max_concurrent_trials of the real study = the GPU workers cluster.yaml can start
    gpus = sum(t.get("max_workers", 0) * t["resources"].get("GPU", 0) for t in node_types.values())
    exp = shipped["xtreme_r.yaml"]
    assert exp.resources.max_concurrent_trials == gpus / exp.resources.gpu == 10


def test_on_demand_takes_what_spot_cannot(node_types):
    exp = load_config(Path(__file__).parents[2] / "configs" / "xtreme_r.yaml")
    trial = demands(exp)["target"][0]
    # spot preferred on equal demand: the marker resource lowers gpu_ondemand's utilization score
    assert schedule(node_types, [trial] * 3) == ({"gpu_spot": 3}, 0)
    full = {"gpu_spot": node_types["gpu_spot"]["max_workers"]}
    assert schedule(node_types, [trial] * 3, full) == ({"gpu_ondemand": 2}, 1)
    # the fallback's request (sweep/fallback.py) can only be met by on-demand nodes
    assert schedule(node_types, [{"ondemand": 1}] * 2) == ({"gpu_ondemand": 2}, 0)


# ---- credentials, environment, storage checks -----------------------------------------------
@pytest.mark.parametrize(
    "uri",
    [
        "s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/itx",
        "s3://bucket/itx?access_key=AKIAEXAMPLE&secret_key=wJalrXUtnFEMI",
        "gs://user@bucket/itx",
    ],
)
def test_credentials_in_a_storage_uri_are_refused_without_repeating_them(uri):
    with pytest.raises(StorageError) as err:
        refuse_credentials_in_uri(uri)
    message = str(err.value)
    assert "carries credentials" in message and "\n" not in message
    assert "wJalrXUtnFEMI" not in message and "AKIAEXAMPLE" not in message


def test_plain_storage_uris_pass():
    for uri in ("s3://bucket/itx", "runs", "/mnt/efs/itx", "s3://bucket/itx?region=us-west-2"):
        refuse_credentials_in_uri(uri)


def test_cli_refuses_credentials_in_storage_with_exit_2(root):
    from typer.testing import CliRunner

    from sweep.cli import app

    secret = "wJalrXUtnFEMI-planted"
    result = CliRunner().invoke(
        app,
        ["run", str(root / "configs" / "demo.yaml"), "--storage", f"s3://KEY:{secret}@b/x"],
    )
    assert result.exit_code == 2
    assert secret not in result.output and len(result.output.strip().splitlines()) == 1


def test_runtime_env_forwards_names_not_secrets(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "planted")
    monkeypatch.setenv("HF_TOKEN", "hf_planted")
    env = runtime_env(threads=8)["env_vars"]
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert env["OMP_NUM_THREADS"] == "8"  # in the process environment before any import
    assert not set(env) & set(SECRET_VARS) and not set(FORWARDED_VARS) & set(SECRET_VARS)


def probe(node: str, **kw) -> NodeProbe:
    fields = {"host": f"host-{node}", "node_type": "gpu_spot", "sees_token": True}
    fields |= {"filesystem": "ext4", "error": None} | kw
    return NodeProbe(node_id=node * 8, **fields)


def test_storage_judgement():
    # object store: every node must write, read and delete
    assert (
        judge("s3://b/x", [probe("a", filesystem=None), probe("b", filesystem=None)], True) is None
    )
    denied = judge("s3://b/x", [probe("a"), probe("b", error="OSError: AccessDenied")], True)
    assert "node bbbbbbbb" in denied and "IamInstanceProfile" in denied
    # a local root: one node without an autoscaler is fine; more nodes need a shared filesystem
    assert judge("/data", [probe("a")], can_grow=False) is None
    assert "node-local disk (ext4)" in judge("/data", [probe("a")], can_grow=True)
    assert "node-local disk" in judge("/data", [probe("a"), probe("b")], can_grow=False)
    assert (
        judge("/mnt/efs", [probe("a", filesystem="nfs4"), probe("b", filesystem="nfs4")], True)
        is None
    )
    blind = judge("/mnt/x", [probe("a", filesystem="nfs4"), probe("b", sees_token=False)], True)
    assert "does not see a file the driver wrote" in blind


def test_filesystem_of_a_folder(tmp_path):
    import psutil

    kinds = {p.fstype for p in psutil.disk_partitions(all=True)}
    assert filesystem_of(str(tmp_path)) in kinds
    assert filesystem_of(str(tmp_path / "not" / "made" / "yet")) == filesystem_of(str(tmp_path))


def test_a_gpu_trial_refuses_to_train_on_the_cpu():
    import torch

    require_gpu(0)  # a CPU trial: nothing to check
    if torch.cuda.is_available():
        require_gpu(1)
        return
    with pytest.raises(GPUUnavailable) as err:
        require_gpu(1)
    assert "sees no GPU" in str(err.value) and "\n" not in str(err.value)


# ---- the spot watcher -----------------------------------------------------------------------
class Metadata(BaseHTTPRequestHandler):
    """IMDSv2 as EC2 serves it: a token by PUT, then 404 or the instance-action notice."""

    notices: ClassVar[dict[str, dict]] = {}  # node path -> notice
    tokens_seen: ClassVar[list[str]] = []

    def do_PUT(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"token-1")

    def do_GET(self):
        Metadata.tokens_seen.append(self.headers.get("X-aws-ec2-metadata-token", ""))
        node = self.path.split("/latest/")[0].strip("/")
        notice = Metadata.notices.get(node)
        self.send_response(200 if notice else 404)
        self.end_headers()
        if notice:
            self.wfile.write(json.dumps(notice).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def metadata_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Metadata.notices.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_watcher_sees_the_notice_once_it_is_issued(metadata_server):
    base = f"{metadata_server}/node-a"
    assert instance_action(base) is None  # 404: no interruption scheduled
    seen = []
    watcher = SpotWatcher(base, seen.append, interval=0.05).start()
    notice = {"action": "terminate", "time": "2026-12-01T18:00:00Z"}
    Metadata.notices["node-a"] = notice
    watcher._thread.join(timeout=5)
    assert seen == [notice] and watcher.notice == notice
    assert Metadata.tokens_seen[-1] == "token-1"  # IMDSv2: the session token sent along
    assert deadline_of(notice) == 1796148000.0  # 2026-12-01T18:00:00Z
    assert instance_action(f"{metadata_server}/node-b") is None  # another node: no notice

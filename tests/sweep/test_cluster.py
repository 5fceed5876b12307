"""Cluster scale without AWS: cluster.yaml checked by Ray's own validation and scheduler, the
cluster-side checks of sweep/cluster.py and sweep/spot.py, and one slow test on Ray's real
autoscaler with its fake multi-node provider (tests/sweep/fake_nodes.py)."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pyarrow.fs as pafs
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
from sweep.config import load_config, parse_config
from sweep.plan import build_plan
from sweep.runner import run_sweep
from sweep.spot import SpotWatcher, deadline_of, instance_action
from sweep.store import ResultsStore, StorageError
from sweep.trainable import trial_resources
from sweep.trial import execute
from tests.sweep.test_store import moto_s3

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
    baked = (root / "deploy" / "Dockerfile").read_text()
    assert f"FROM {cluster_yaml['docker']['image']}\n" in baked  # the baked image's base
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


def test_secrets_reach_trials_through_rays_memory_not_their_environment(monkeypatch):
    from sweep.cluster import publish_secrets, receive_secrets

    monkeypatch.delenv("HF_TOKEN", raising=False)
    ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.WARNING)
    try:
        key = publish_secrets({"HF_TOKEN": "hf_planted_kv"})

        @ray.remote(num_cpus=0)
        def trial_view(key):
            before = os.environ.get("HF_TOKEN")
            receive_secrets(key)
            return before, os.environ.get("HF_TOKEN")

        assert ray.get(trial_view.remote(key)) == (None, "hf_planted_kv")
    finally:
        ray.shutdown()


# ---- (b, c, d) Ray's real autoscaler on its fake multi-node provider ----------------------
PLANTED_AWS = "itx-planted-aws-secret-4d1e8f"
PLANTED_HF = "hf_itxplantedtoken9b2c77"
WORKER_TYPES = {  # cluster.yaml's shape at test scale: 1-CPU "GPU" workers, spot and on-demand
    "gpu_spot": {
        "resources": {"CPU": 1, "GPU": 1},
        "node_config": {},
        "min_workers": 0,
        "max_workers": 2,
    },
    "gpu_ondemand": {
        "resources": {"CPU": 1, "GPU": 1, "ondemand": 1},
        "node_config": {},
        "min_workers": 0,
        "max_workers": 1,
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeCluster:
    """`ray start --head --block` with an autoscaling config for tests.sweep.fake_nodes; every
    process it starts descends from that one process, which is how `stop` finds them."""

    def __init__(self, base: Path, spot_url: str) -> None:
        self.base, self.spot_url = base, spot_url
        self.ip = ray._private.services.get_node_ip_address()
        self.address = f"{self.ip}:{free_port()}"
        self.process: subprocess.Popen | None = None

    def start(self) -> FakeCluster:
        config = {
            "cluster_name": "itx-fake",
            "max_workers": 3,
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": 0.1,  # 6 s
            "provider": {
                "type": "external",
                "module": "tests.sweep.fake_nodes.NodeLocalProvider",
                "gcs_address": self.address,
                "use_node_id_as_ip": True,
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
                "node_tmp_root": str(self.base / "nodes"),
                "spot_metadata_url": self.spot_url,
            },
            "available_node_types": {
                # the provider's own name for the head it was started on
                "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
                **copy.deepcopy(WORKER_TYPES),
            },
            "head_node_type": "ray.head.default",
            "auth": {},
            "docker": {},
            **{k: [] for k in ("initialization_commands", "setup_commands")},
            **{k: [] for k in ("head_setup_commands", "worker_setup_commands")},
            **{k: [] for k in ("head_start_ray_commands", "worker_start_ray_commands")},
            "file_mounts": {},
            "cluster_synced_files": [],
            "file_mounts_sync_continuously": False,
            "rsync_exclude": [],
            "rsync_filter": [],
        }
        path = self.base / "autoscaler.json"
        path.write_text(json.dumps(config))
        # the head's token (~/.ray/auth_token) for this process's own GCS client, as ray.init does
        from ray._private.authentication import authentication_token_setup as auth

        auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        env = {
            **os.environ,
            "RAY_FAKE_CLUSTER": "1",
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "AUTOSCALER_HEARTBEAT_TIMEOUT_S": "10",  # a killed node leaves the provider's list
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), *sys.path]),
        }
        system = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "ray"),
                "start",
                "--head",
                "--block",
                f"--port={self.address.rsplit(':', 1)[1]}",
                "--num-cpus=0",
                "--include-dashboard=false",
                f"--temp-dir={self.base / 'ray'}",
                f"--autoscaling-config={path}",
                f"--system-config={json.dumps(system)}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for("the head node", lambda: self.nodes() is not None, timeout=60, every=0.5)
        return self

    def nodes(self) -> dict[str, tuple[str, str, str]] | None:
        """node id -> (state, node type, death reason), from the GCS."""
        from ray.core.generated import common_pb2, gcs_pb2

        try:
            client = ray._raylet.GcsClient(address=self.address)
            infos = client.get_all_node_info(timeout=2)
        except Exception:
            return None
        return {
            node_id.hex(): (
                gcs_pb2.GcsNodeInfo.GcsNodeState.Name(info.state),
                info.node_type_name or "head",
                common_pb2.NodeDeathInfo.Reason.Name(info.death_info.reason),
            )
            for node_id, info in infos.items()
        }

    def descendants(self) -> list:
        import psutil

        return psutil.Process(self.process.pid).children(recursive=True)

    def kill_node(self, node_id: str) -> int:
        """SIGKILL every process of one fake node (its raylet, agents, workers): a lost instance."""
        import psutil

        killed = 0
        for proc in self.descendants():
            with contextlib.suppress(psutil.Error):
                if proc.environ().get("RAY_OVERRIDE_NODE_ID_FOR_TESTING") == node_id:
                    proc.kill()
                    killed += 1
        return killed

    def stop(self) -> None:
        import psutil

        if self.process is None:
            return
        procs = [*self.descendants(), psutil.Process(self.process.pid)]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=20)


def elastic_config(root: Path, storage: str):
    raw = yaml.safe_load((root / "tests" / "fixtures" / "tiny.yaml").read_text())
    raw.update(
        name="elastic",
        storage=storage,
        intermediates=["topic_easy"],
        targets=["nli"],
        languages=["en"],
        controls={"scratch": False},
        data={"train": 1024, "dev": 32, "test": 32},  # 64 steps: long enough to preempt
        # no periodic save: the only mid-epoch state is the one the spot notice asks for
        train={"epochs": 1, "batch_size": 16, "checkpoint_every": 100_000},
        tasks={"nli": {"train": {"epochs": 2}}},  # targets outlast the intermediate
        # no failure allowed: a preempted trial that Tune counted would fail the sweep
        resources={"cpu": 1, "pretrain_cpu": 1, "max_concurrent_trials": 2, "max_failures": 0},
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


def count_in_files(paths, needles: tuple[str, ...]) -> dict[str, int]:
    counts = dict.fromkeys(needles, 0)
    for data in paths:
        for needle in needles:
            counts[needle] += data.count(needle.encode())
    return counts


@pytest.fixture
def s3_endpoint():
    yield from moto_s3()


@pytest.fixture
def short_tmp():
    """A folder under /tmp with a short path: Ray's socket paths must stay under 108 bytes."""
    base = Path(tempfile.mkdtemp(prefix="itx-as-", dir="/tmp"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_autoscaler_launches_replaces_and_removes_nodes(
    root, s3_endpoint, metadata_server, short_tmp, monkeypatch
):
    """(b) pending trials launch nodes, a spot notice drains one mid-trial and it is killed, a
    replacement launches and the trial resumes from the state pushed at the notice, idle nodes
    go; (c) each node has its own temp folder and a node-local root is refused; (d) planted
    credentials appear in no file of the store or of Ray's session folder."""
    started = time.monotonic()
    base = short_tmp
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PLANTED_AWS)  # moto takes any key
    monkeypatch.setenv("HF_TOKEN", PLANTED_HF)
    exp = elastic_config(root, f"{s3_endpoint}/cluster")
    store = ResultsStore(exp.storage, exp.name)
    cluster = FakeCluster(base, metadata_server).start()
    timeline: list[str] = []
    seen: dict[str, tuple] = {}
    states: dict[str, tuple] = {}
    stop = threading.Event()

    def note(text: str) -> None:
        timeline.append(f"{time.monotonic() - started:6.1f} s  {text}")

    def watch() -> None:  # nodes from the GCS, trials from their records on the store
        while not stop.wait(0.25):
            for node, info in (cluster.nodes() or {}).items():
                if seen.get(node) != info and info[1] != "head":
                    note(
                        f"node {node[-5:]} ({info[1]}) {info[0].lower()} "
                        f"{info[2] if info[0] == 'DEAD' else ''}"
                    )
                seen[node] = info
            with contextlib.suppress(OSError, ValueError):
                for key, r in store.read_records().items():
                    state = (r["state"], r["attempt"], r.get("node_id"))
                    if states.get(key) != state:
                        where = (r.get("node_id") or "?")[-5:]
                        extra = (
                            f", resumed from step {r['resumed_from_step']}"
                            if r["state"] == "done"
                            else ""
                        )
                        note(
                            f"trial {r['label']} {r['state']} on {where} "
                            f"(attempt {r['attempt']}{extra})"
                        )
                    states[key] = state

    watcher = threading.Thread(target=watch, daemon=True)
    outcome: dict = {}
    sweep = threading.Thread(
        target=lambda: outcome.update(done=run_sweep(exp, address=cluster.address, verbose=0))
    )
    try:
        # (c) a node-local root on a cluster that can grow: refused before any trial
        local = exp.model_copy(update={"storage": str(base / "local-root")})
        with pytest.raises(StorageError, match="node-local disk"):
            run_sweep(local, address=cluster.address, verbose=0)
        watcher.start()
        note("sweep submitted; no worker node yet")
        sweep.start()
        plan = {t.key: t for t in build_plan(exp)}
        victim = next(t for t in plan.values() if t.kind == "intermediate")
        running = wait_for(
            "the intermediate trial running",
            lambda: (r := store.read_records().get(victim.key)) and r["state"] == "running" and r,
            timeout=120,
        )
        node = running["node_id"]
        Metadata.notices[node] = {"action": "terminate", "time": "2026-12-01T18:00:00Z"}
        note(f"spot interruption notice for node {node[-5:]}")
        latest = f"{store.state_root(victim)}/LATEST"
        wait_for("the state pushed at the notice", lambda: store.exists(latest), timeout=60)
        step_at_kill = int(store.read_bytes(latest).decode().removeprefix("v"))
        alive_before = {n for n, i in (cluster.nodes() or {}).items() if i[0] == "ALIVE"}
        assert cluster.kill_node(node) > 0
        note(
            f"node {node[-5:]} killed (its instance terminated), state saved at step {step_at_kill}"
        )
        sweep.join(timeout=150)
        assert not sweep.is_alive(), "the sweep did not finish"

        def all_workers_gone():
            now = cluster.nodes() or {}
            workers = [i for i in now.values() if i[1] != "head"]
            return now if workers and all(i[0] == "DEAD" for i in workers) else None

        nodes = wait_for("idle nodes removed", all_workers_gone, timeout=60, every=0.5)
        note("every worker node removed")
    finally:
        stop.set()
        ray.shutdown()
        cluster.stop()
        if watcher.is_alive():
            watcher.join(timeout=5)
    wall = time.monotonic() - started
    log.warning("autoscaler timeline (wall %.0f s):\n%s", wall, "\n".join(timeline))

    result = outcome["done"]
    assert result.errored == {} and result.skipped == {}  # the preemption was not counted
    records = store.read_records()
    assert {r["state"] for r in records.values()} == {"done"}
    final = records[victim.key]
    assert final["attempt"] == 2 and final["node_id"] != node
    assert 0 < step_at_kill <= final["resumed_from_step"] < 64  # resumed from the pushed state
    assert nodes[node][2] == "AUTOSCALER_DRAIN_PREEMPTED"  # Ray saw a preemption
    workers = {n: i for n, i in nodes.items() if i[1] != "head"}
    replacements = set(workers) - alive_before - {node}
    assert replacements, "no node launched after the kill"
    assert len(workers) >= 3 and all(i[0] == "DEAD" for i in workers.values())
    assert {i[1] for i in workers.values()} <= set(WORKER_TYPES)
    # the resumed trial ends with the metrics of an uninterrupted run of the same chain
    reference = exp.model_copy(update={"storage": str(base / "reference")})
    ref_store = ResultsStore(reference.storage, exp.name)
    for spec in (plan[victim.parent], victim):
        rows = execute(spec, reference, ref_store)
    got = store.read_rows(victim).sort_values(["language", "metric"]).reset_index(drop=True)
    rows = rows.sort_values(["language", "metric"]).reset_index(drop=True)
    assert got["value"].tolist() == rows["value"].tolist()
    # (c) every worker node had its own temp folder; none kept trial state or temporary folders
    # behind (sweep.node), only its cache of finished parent encoders, each whole (its DONE)
    from tests.sweep.test_artifacts import leftovers

    folders = sorted((base / "nodes").iterdir())
    assert len(folders) == len(workers)
    parents = [t for t in plan.values() if t.kind != "target"]  # the root and the intermediate
    finished = {store.read_bytes(f"{store.artifact(t)}/DONE") for t in parents}
    left: dict[str, list[str]] = {}
    cached: dict[str, int] = {}
    for folder in folders:
        if folder.name == node[-5:]:
            continue  # the killed node: its disk went with the instance
        left[folder.name] = leftovers(folder)
        cache = folder / "itx-node" / "cache"
        entries = [p for p in cache.iterdir() if p.is_dir()] if cache.is_dir() else []
        cached[folder.name] = len(entries)
        for entry in entries:
            assert (entry / "DONE").read_bytes() in finished, entry
    log.warning("left on the surviving nodes' disks: %s; cache entries: %s", left, cached)
    assert all(found == [] for found in left.values()), left  # every trial cleaned up after itself
    assert sum(cached.values()) > 0 and max(cached.values()) <= len(parents)
    # (d) planted credentials: in no object of the store, no file of Ray's session folder
    fs = store.fs
    objects = [
        i.path
        for i in fs.get_file_info(pafs.FileSelector("itx", recursive=True))
        if i.type == pafs.FileType.File
    ]
    in_store = count_in_files(
        (fs.open_input_stream(p).read() for p in objects), (PLANTED_AWS, PLANTED_HF)
    )
    session_files = [p for p in (base / "ray").rglob("*") if p.is_file() and not p.is_symlink()]
    in_session = count_in_files((p.read_bytes() for p in session_files), (PLANTED_AWS, PLANTED_HF))
    log.warning(
        "planted secrets: store %d objects -> %s; Ray session folder %d files -> %s",
        len(objects),
        in_store,
        len(session_files),
        in_session,
    )
    assert len(objects) > 20 and len(session_files) > 20
    assert sum(in_store.values()) == 0 and sum(in_session.values()) == 0


# ---- the on-demand fallback -----------------------------------------------------------------
def autoscaler_status(spot_error: str | None, pending_trials: int) -> dict:
    """The status Ray's monitor writes (monitor.py: asdict of its summaries, then JSON)."""
    from dataclasses import asdict

    from ray.autoscaler._private.autoscaler import AutoscalerSummary
    from ray.autoscaler._private.node_provider_availability_tracker import (
        NodeAvailabilityRecord,
        NodeAvailabilitySummary,
        UnavailableNodeInformation,
    )
    from ray.autoscaler._private.util import LoadMetricsSummary

    record = NodeAvailabilityRecord(
        node_type="gpu_spot",
        is_available=spot_error is None,
        last_checked_timestamp=1.0,
        unavailable_node_information=UnavailableNodeInformation(
            category="InsufficientInstanceCapacity", description=spot_error
        )
        if spot_error
        else None,
    )
    report = AutoscalerSummary(
        active_nodes={},
        idle_nodes={},
        pending_nodes=[],
        pending_launches={},
        failed_nodes=[],
        node_availability_summary=NodeAvailabilitySummary({"gpu_spot": record}),
    )
    bundle = {"CPU": 8.0, "GPU": 1.0, "memory": 20.0 * 2**30}
    group = {"bundles": [(bundle, 1)], "strategy": "PACK"}
    load = LoadMetricsSummary(
        usage={},
        resource_demand=[],
        pg_demand=[(group, pending_trials)] if pending_trials else [],
        request_demand=[],
        node_types=[],
    )
    return json.loads(
        json.dumps({"autoscaler_report": asdict(report), "load_metrics_report": asdict(load)})
    )


def test_fallback_asks_for_on_demand_only_while_spot_fails_and_trials_wait(monkeypatch):
    from sweep import fallback

    requests: list[list[dict]] = []
    monkeypatch.setattr(
        "ray.autoscaler.sdk.request_resources", lambda bundles: requests.append(bundles)
    )
    short = "There is no Spot capacity available that matches your request."
    assert fallback.wanted(autoscaler_status(None, 5), cap=10) == 0  # spot launches: no fallback
    assert fallback.wanted(autoscaler_status(short, 0), cap=10) == 0  # nothing waits
    assert fallback.wanted(autoscaler_status(short, 5), cap=10) == 5
    assert fallback.wanted(autoscaler_status(short, 12), cap=10) == 10
    assert "InsufficientInstanceCapacity" in fallback.spot_unavailable(autoscaler_status(short, 1))
    keeper = fallback.OnDemandFallback(cap=10)
    keeper.step(autoscaler_status(short, 3))
    keeper.step(autoscaler_status(short, 3))  # unchanged: no new request
    keeper.step(autoscaler_status(None, 3))  # spot is back: withdrawn
    assert requests == [[{"ondemand": 1}] * 3, []]
    assert fallback.MARKER == "ondemand" and fallback.SPOT_TYPE == "gpu_spot"  # cluster.yaml's


def test_the_driver_fetches_the_hub_encoder_before_any_trial(root, tmp_path, monkeypatch):
    """The encoder is a download: the driver does it before Ray starts, so an unreachable one
    is one line and exit code 2, not a GPU trial that fails after a cold node start."""
    from typer.testing import CliRunner

    from sweep.cli import app
    from tests.sweep.test_config import HUB
    from tests.trainers.test_sources import fixture_override

    hub = root / "tests" / "fixtures" / "hub"
    sources = {"mnli": fixture_override(hub / "mnli"), "xnli": fixture_override(hub / "xnli")}
    missing = str(tmp_path / "no-such-encoder")  # offline: neither cached nor a folder
    raw = {**HUB, "storage": str(tmp_path / "runs"), "languages": ["de"]}
    raw |= {"encoder": {"name": missing}, "data": {**HUB["data"], "sources": sources}}
    config = tmp_path / "real.yaml"
    config.write_text(yaml.safe_dump(raw))
    started = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append(1))
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no-such-encoder" in errors[0] and "cannot be loaded" in errors[0]
    assert started == []  # Ray never started: no trial, no node


def test_tunes_copy_of_aws_credentials_is_filtered(monkeypatch):
    """Tune puts AWS_* keys of the driver into each trainable's runtime_env (which Ray logs);
    after keep_secrets_out_of_tune the same call carries none of them."""
    from ray.tune.execution import class_cache

    from sweep.cluster import keep_secrets_out_of_tune

    monkeypatch.setattr(
        class_cache, "ENV_VARS_TO_PROPAGATE", class_cache.ENV_VARS_TO_PROPAGATE | {*SECRET_VARS}
    )
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "planted")

    def runtime_env_of_a_trainable():
        class Trainable:
            pass

        return class_cache._ActorClassCache().get(Trainable)._default_options["runtime_env"]

    assert runtime_env_of_a_trainable()["env_vars"]["AWS_SECRET_ACCESS_KEY"] == "planted"
    keep_secrets_out_of_tune()
    assert "AWS_SECRET_ACCESS_KEY" not in runtime_env_of_a_trainable()["env_vars"]


def test_a_cluster_can_grow_only_with_an_autoscaling_config(monkeypatch):
    from sweep import cluster, fallback

    def status(active):
        report = {"active_nodes": active, "idle_nodes": None, "pending_nodes": []}
        return lambda: {"autoscaler_report": report}

    monkeypatch.setattr(fallback, "read_status", status({"node_f1f799f3": 1}))  # ray.init()
    assert not cluster.autoscaler_running()
    monkeypatch.setattr(fallback, "read_status", status({"head": 1}))  # `ray up cluster.yaml`
    assert cluster.autoscaler_running()
    monkeypatch.setattr(fallback, "read_status", dict)  # no monitor report yet
    assert not cluster.autoscaler_running()

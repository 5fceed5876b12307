"""What a sweep needs of a multi-node Ray cluster: the environment trials get, secrets kept out of
Ray's and Tune's files, the storage root probed on every node, a GPU that is really there.

The runner calls these at three places: before Ray starts (`refuse_credentials_in_uri`), right
after it connects (`prepare_cluster`: runtime env, secrets, storage probe on every node), and the
trainable at the start of every trial (`enter_trial`: secrets, storage seen from this node, GPU).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.store import ResultsStore, StorageError, first_line

log = logging.getLogger(__name__)

# Reach the trials through the job's runtime_env: endpoints, regions, hub settings. None of them is
# a secret; Ray writes runtime_env values into its logs (runtime_env_agent.log, mode 644).
FORWARDED_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "ITX_CACHE",
)
# Never in a runtime_env, a Tune param or a log. Object-store credentials: workers use their own
# instance profile (cluster.yaml). The hub token reaches trials through Ray's in-memory KV store.
SECRET_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
)
TRIAL_SECRETS = ("HF_TOKEN",)  # what a trial may need: gated data sets on the hub
KV_NAMESPACE = "itx"
# filesystems every node of a cluster can mount: a local root on one of these may be shared
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "glusterfs", "ceph", "beegfs", "gpfs"}
    | {"wekafs", "fuse.s3fs", "fuse.gcsfuse", "fuse.mountpoint-s3", "fuse.juicefs", "efs"}
)
PROBE_TIMEOUT_S = 120.0
CREDENTIAL_QUERY_KEYS = ("access_key", "secret_key", "session_token", "credential")


class GPUUnavailable(RuntimeError):
    """resources.gpu > 0 but torch sees no CUDA device on this node; one line."""


def refuse_credentials_in_uri(uri: str) -> None:
    """StorageError (one line, the secret not repeated) for `s3://KEY:SECRET@bucket/x` or
    `?access_key=...&secret_key=...`: pyarrow accepts both and Tune would copy the URI into
    params.json, result.json and its experiment state."""
    if "://" not in uri:
        return
    parts = urllib.parse.urlsplit(uri)
    query = {k.lower() for k in urllib.parse.parse_qs(parts.query)}
    if "@" in parts.netloc or any(k in query for k in CREDENTIAL_QUERY_KEYS):
        scheme_host = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"
        raise StorageError(
            f"storage {scheme_host!r}: the URI carries credentials (user:secret@ or "
            f"{'/'.join(CREDENTIAL_QUERY_KEYS)} in its query); remove them and use the "
            "environment (AWS_* variables, ~/.aws) or the nodes' instance profile"
        )


# ---- the environment of trials -------------------------------------------------------------
def runtime_env(threads: int) -> dict[str, Any]:
    """The job's runtime_env: forwarded variables by name, and OMP_NUM_THREADS set in the
    environment every worker process starts with (before any import of torch or numpy)."""
    env = {name: os.environ[name] for name in FORWARDED_VARS if os.environ.get(name)}
    env["OMP_NUM_THREADS"] = str(threads)
    return {"env_vars": env}


def keep_secrets_out_of_tune() -> None:
    """Tune copies AWS_* credentials from the driver into each trainable's runtime_env
    (ray/tune/execution/class_cache.py: ENV_VARS_TO_PROPAGATE), which Ray logs in
    runtime_env_agent.log. Nodes have their own credentials (instance profile, or the
    environment they were started with); drop those names from the copy."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = frozenset(
        class_cache.ENV_VARS_TO_PROPAGATE - set(SECRET_VARS)
    )


def hub_token() -> str | None:
    """The driver's hub token: HF_TOKEN or huggingface_hub's token file (`hf auth login`)."""
    try:
        from huggingface_hub import get_token
    except ImportError:
        return os.environ.get("HF_TOKEN")
    return get_token()


def publish_secrets(secrets: dict[str, str]) -> str:
    """Secrets into Ray's in-memory KV store (the GCS; not written to disk without Redis) under
    a fresh key; the key, not the value, travels in the trials' params."""
    from ray.experimental import internal_kv

    key = f"secrets-{uuid.uuid4().hex}"
    internal_kv._internal_kv_put(key, json.dumps(secrets), namespace=KV_NAMESPACE)
    return key


def withdraw_secrets(key: str) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_del(key, namespace=KV_NAMESPACE)


def receive_secrets(key: str | None) -> None:
    """In a trial: set the published secrets in this process's environment (not overriding)."""
    if not key:
        return
    from ray.experimental import internal_kv

    raw = internal_kv._internal_kv_get(key, namespace=KV_NAMESPACE)
    for name, value in json.loads(raw or "{}").items():
        os.environ.setdefault(name, value)


# ---- storage, probed from every node -------------------------------------------------------
@dataclass(frozen=True)
class NodeProbe:
    node_id: str
    host: str
    node_type: str | None  # RAY_NODE_TYPE_NAME where the launcher sets it
    sees_token: bool  # read the file the driver wrote under the run folder
    filesystem: str | None  # local roots: the filesystem type holding the root on that node
    error: str | None  # first line of a failed write/read/delete, None when all worked


def token_path(store: ResultsStore, token: str) -> str:
    return f"{store.run}/.nodes/{token}"


def filesystem_of(path: str) -> str:
    """Filesystem type of the mount holding `path` (the longest matching mount point)."""
    import psutil

    target = Path(path).resolve()
    while not target.exists() and target != target.parent:
        target = target.parent
    best, kind = "", "unknown"
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint.rstrip("/") or "/"
        inside = str(target) == mount or str(target).startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, part.fstype
    return kind


def probe_here(uri: str, name: str, token: str) -> NodeProbe:
    """On one node: does the driver's token show, and can this node write, read and delete?"""
    import ray

    store = ResultsStore(uri, name)
    error = None
    try:
        sees = store.exists(token_path(store, token))
        probe = f"{store.run}/.nodes/probe-{uuid.uuid4().hex}"
        store.write_bytes(probe, b"probe")
        if store.read_bytes(probe) != b"probe":
            raise OSError("a written probe file read back different bytes")
        store.fs.delete_file(probe)
    except OSError as err:
        sees, error = False, first_line(err)
    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return NodeProbe(
        node_id=node_id,
        host=socket.gethostname(),
        node_type=os.environ.get("RAY_NODE_TYPE_NAME"),
        sees_token=sees,
        filesystem=filesystem_of(store.run) if store.is_local else None,
        error=error,
    )


def judge(uri: str, probes: list[NodeProbe], can_grow: bool) -> str | None:
    """The reason the storage root cannot serve this cluster, or None.

    `can_grow`: an autoscaler runs, so nodes not up yet will join; a local root is then refused
    unless it lies on a network filesystem seen by every node now up.
    """
    for p in probes:
        if p.error is not None:
            return (
                f"storage {uri!r}: node {p.node_id[:8]} ({p.host}, type {p.node_type or '?'}) "
                f"cannot use it: {p.error}; workers need their own credentials (cluster.yaml: "
                "IamInstanceProfile of every worker type)"
            )
    if "://" in uri:
        return None
    blind = [p for p in probes if not p.sees_token]
    if blind:
        p = blind[0]
        return (
            f"storage {uri!r} is node-local: node {p.node_id[:8]} ({p.host}) does not see a file "
            "the driver wrote there; use s3://, gs:// or a filesystem mounted on every node"
        )
    multi = len(probes) > 1 or can_grow
    local = sorted({p.filesystem or "unknown" for p in probes} - NETWORK_FILESYSTEMS)
    if multi and local:
        return (
            f"storage {uri!r} is on a node-local disk ({', '.join(local)}) of a multi-node "
            "cluster: each node would keep its own artifacts; use s3://, gs:// or a filesystem "
            f"mounted on every node ({', '.join(sorted(NETWORK_FILESYSTEMS)[:4])}, ...)"
        )
    return None


def autoscaler_running() -> bool:
    """True when Ray's autoscaler runs with a cluster config (`ray up` clusters, the fake
    multi-node provider): worker nodes may join later, whatever is up now.

    Without one (`ray.init()`, a hand-started `ray start`), Ray's monitor runs its read-only
    config, whose node types are the nodes themselves, named `node_<id>`
    (ray/autoscaler/_private/util.py: format_readonly_node_type).
    """
    from sweep.fallback import read_status

    report = read_status().get("autoscaler_report") or {}
    types = {*(report.get("active_nodes") or {}), *(report.get("idle_nodes") or {})}
    types |= {kind for _ip, kind, *_ in report.get("pending_nodes") or []}
    return any(not kind.startswith("node_") for kind in types)


def probe_nodes(store: ResultsStore, token: str) -> list[NodeProbe]:
    """One Ray task per alive node (pinned to it, zero CPUs), all at once, bounded in time."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=0, max_retries=0)(probe_here)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = {
        node: remote.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        ).remote(store.uri, store.name, token)
        for node in nodes
    }
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
    probes = []
    for node, ref in refs.items():
        if ref not in ready:
            probes.append(NodeProbe(node, "?", None, False, None, "no answer within 120 s"))
            continue
        try:
            probes.append(ray.get(ref))
        except ray.exceptions.RayError as err:
            probes.append(NodeProbe(node, "?", None, False, None, first_line(str(err))))
    return probes


@dataclass
class ClusterSession:
    """What the driver set up for this sweep; `close` withdraws the secrets."""

    token: str | None = None  # the storage token file, checked again by every trial
    secrets_key: str | None = None
    probes: tuple[NodeProbe, ...] = ()
    fallback: Any = None  # sweep.fallback.OnDemandFallback on autoscaling clusters

    def params(self) -> dict[str, Any]:
        return {"storage_token": self.token, "secrets_key": self.secrets_key}

    def close(self, store: ResultsStore) -> None:
        if self.fallback is not None:
            self.fallback.stop()
        if self.secrets_key:
            try:
                withdraw_secrets(self.secrets_key)
            except Exception as err:  # a Ray already shut down has dropped its KV store
                log.debug("secrets not withdrawn: %s", err)
        if self.token:
            with contextlib.suppress(OSError):
                store.fs.delete_file(token_path(store, self.token))


def prepare_cluster(store: ResultsStore, on_cluster: bool, trials_at_once: int) -> ClusterSession:
    """After ray.init: keep credentials out of Tune's copies, publish the hub token, and (on a
    cluster, `--address`) probe the storage root from every node, StorageError if it fails;
    on an autoscaling cluster, start the on-demand fallback (sweep/fallback.py)."""
    keep_secrets_out_of_tune()
    session = ClusterSession()
    token = hub_token()
    if token:
        session.secrets_key = publish_secrets({"HF_TOKEN": token})
    if not on_cluster:
        return session
    session.token = uuid.uuid4().hex
    store.write_bytes(token_path(store, session.token), b"itx\n")
    session.probes = tuple(probe_nodes(store, session.token))
    can_grow = autoscaler_running()
    problem = judge(store.uri, list(session.probes), can_grow)
    if problem is not None:
        session.close(store)
        raise StorageError(problem)
    if can_grow:
        from sweep.fallback import OnDemandFallback

        session.fallback = OnDemandFallback(cap=trials_at_once).start()
    log.info(
        "storage %s probed from %d node(s): %s",
        store.uri,
        len(session.probes),
        ", ".join(f"{p.host}/{p.node_type or '?'}" for p in session.probes),
    )
    return session


# ---- at the start of every trial -----------------------------------------------------------
def require_gpu(gpu: float) -> None:
    """A trial that asked Ray for a GPU must get one from torch: no silent CPU training."""
    if gpu <= 0:
        return
    import torch

    if not torch.cuda.is_available():
        raise GPUUnavailable(
            f"resources.gpu={gpu:g} but torch {torch.__version__} (CUDA build "
            f"{torch.version.cuda or 'none'}) sees no GPU on {socket.gethostname()}: refusing to "
            "train on the CPU; check the node image's NVIDIA driver, or set resources.gpu: 0"
        )


def enter_trial(params: dict[str, Any], store: ResultsStore, gpu: float) -> None:
    """Secrets, the storage root as this node sees it, and the GPU; raises one line."""
    receive_secrets(params.get("secrets_key"))
    token = params.get("storage_token")
    if token and not store.exists(token_path(store, token)):
        raise StorageError(
            f"storage {store.uri!r} is node-local: {socket.gethostname()} does not see the file "
            "the driver wrote there; use s3://, gs:// or a filesystem mounted on every node"
        )
    require_gpu(gpu)

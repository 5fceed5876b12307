"""The only code that runs inside a Tune trial, kept thin so training runs the same without Ray."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
from typing import Any

import ray
from ray import tune

from sweep import spot
from sweep.cluster import enter_trial
from sweep.config import Experiment
from sweep.plan import TrialSpec
from sweep.store import ResultsStore, first_line
from sweep.trial import execute

log = logging.getLogger(__name__)


def run_trial(params: dict[str, Any]) -> None:
    """Tune entry point: validate, execute (or reuse a finished artifact), report once.

    Writes <run>/trials/<key>.json (state, node, attempt, seconds, first error line) at start and
    end, which is what `itx status` reads; a retry on another node overwrites it.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # a line per file of every save
    spec = TrialSpec.model_validate(params["spec"])  # frozen; a bad spec fails before training
    exp = Experiment.model_validate(params["experiment"])
    store = ResultsStore(params["storage"], exp.name)
    # OMP_NUM_THREADS comes with the process (the runtime_env, sweep.cluster.runtime_env):
    # set here it would come after numpy's import; torch threads are set by execute
    cpus = exp.resources.pretrain_cpu if spec.kind == "pretrain" else exp.resources.cpu
    record = _start_record(store, spec)
    started = time.perf_counter()
    info: dict[str, Any] = {}
    try:
        enter_trial(params, store, exp.resources.gpu)  # secrets, storage from here, the GPU
        with spot.watching():  # a spot interruption notice: drain this node, save now
            rows = execute(spec, exp, store, threads=cpus, info=info)
    except Exception as err:
        _finish_record(store, spec, record, started, info, state="failed", error=first_line(err))
        raise
    _finish_record(store, spec, record, started, info, state="done")
    summary: dict[str, Any] = {
        "done": 1,
        "key": spec.key,
        "kind": spec.kind,
        "node_id": record["node_id"],
        "attempt": record["attempt"],
        "resumed_from_step": info.get("resumed_from_step", 0),
    }
    if not rows.empty:
        primary = rows[rows["primary"]]
        summary["score"] = float(primary["value"].mean())
        summary["seconds"] = float(rows["seconds"].iloc[0])
    tune.report(summary)


def _start_record(store: ResultsStore, spec: TrialSpec) -> dict[str, Any]:
    previous: dict[str, Any] = {}
    path = store.record_file(spec.key)
    if store.exists(path):
        try:
            previous = json.loads(store.read_bytes(path))
        except (OSError, ValueError):
            previous = {}
    # a record left "running" or "failed" means an earlier attempt died or raised: this is a retry
    attempt = int(previous.get("attempt", 0)) + 1 if previous.get("state") != "done" else 1
    record = {
        "key": spec.key,
        "kind": spec.kind,
        "label": spec.label,
        "state": "running",
        "attempt": attempt,
        "node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized() else None,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "errors": previous.get("errors", []) if attempt > 1 else [],
    }
    store.write_record(spec.key, record)
    return record


def _finish_record(
    store: ResultsStore,
    spec: TrialSpec,
    record: dict[str, Any],
    started: float,
    info: dict[str, Any],
    state: str,
    error: str | None = None,
) -> None:
    record.update(
        state=state,
        seconds=round(time.perf_counter() - started, 3),
        finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        reused=info.get("reused", False),
        resumed_from_step=info.get("resumed_from_step", 0),
    )
    if error is not None:
        record["errors"] = [*record["errors"], error]
    try:
        store.write_record(spec.key, record)
    except OSError as err:  # bookkeeping must not turn a finished trial into a failed one
        log.warning("trial %s: could not write its record: %s", spec.key, err)


def trial_resources(params: dict[str, Any]) -> dict[str, float]:
    """Resources of one trial, from the config: pretraining may take the whole machine."""
    res = params["experiment"]["resources"]
    kind = params["spec"]["kind"]
    request: dict[str, float] = {"cpu": res["pretrain_cpu"] if kind == "pretrain" else res["cpu"]}
    if res["gpu"]:
        request["gpu"] = res["gpu"]
    if res["memory_gb"]:
        request["memory"] = res["memory_gb"] * 2**30
    return request

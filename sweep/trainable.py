"""The only code that runs inside a Tune trial, kept thin so training runs the same without Ray."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import ray
from ray import tune

from sweep import spot
from sweep.cluster import enter_trial
from sweep.config import Experiment
from sweep.plan import TrialSpec
from sweep.progress import part_prefix
from sweep.store import ResultsStore, first_line
from sweep.trial import execute

if TYPE_CHECKING:
    from trainers.loop import EpochEnd

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
    from trainers.loop import EPOCH_LISTENER  # torch: inside the trial, not on the driver

    token = EPOCH_LISTENER.set(lambda end: _on_epoch(store, spec, record, end))
    try:
        enter_trial(params, store, exp.resources.gpu)  # secrets, storage from here, the GPU
        with spot.watching():  # a spot interruption notice: drain this node, save now
            rows = execute(spec, exp, store, threads=cpus, info=info)
    except Exception as err:
        _finish_record(store, spec, record, started, info, state="failed", error=first_line(err))
        raise
    finally:
        EPOCH_LISTENER.reset(token)
    _finish_record(store, spec, record, started, info, state="done")
    summary: dict[str, Any] = {
        "done": 1,
        "key": spec.key,
        "kind": spec.kind,
        "node_id": record["node_id"],
        "attempt": record["attempt"],
        "resumed_from_step": info.get("resumed_from_step", 0),
        "reused": int(info.get("reused", False)),
        "seconds": record["seconds"],  # the whole trial: data, training, evaluation, upload
        **final_metrics(rows),
    }
    tune.report(summary)


def _on_epoch(store: ResultsStore, spec: TrialSpec, record: dict[str, Any], end: EpochEnd) -> None:
    """Report the epoch to Tune, and note it in the trial's record for `itx status`."""
    metrics = epoch_metrics(spec, end)
    tune.report(metrics)
    part = f" ({metrics['part']})" if metrics["part"] else ""
    record["progress"] = f"epoch {metrics['epoch']}/{end.epochs}{part}"
    try:
        store.write_record(spec.key, record)
    except OSError as err:  # a status detail: never worth failing a trial over
        log.warning("trial %s: could not write its record: %s", spec.key, err)


def epoch_metrics(spec: TrialSpec, end: EpochEnd) -> dict[str, Any]:
    """One epoch's report to Tune (TensorBoard curves, the progress lines): `en_dev` is the
    trial's own task; an earlier stage or the V-information null model is named by `part`."""
    own = spec.intermediate if spec.kind == "intermediate" else spec.target_task
    part = "null model" if end.null_model else ("" if end.task == own else end.task)
    prefix = part_prefix(part)
    return {
        "done": 0,  # the searcher's metric: every result must carry it
        "epoch": end.epoch + 1,
        "epochs": end.epochs,
        "part": part,
        "metric": end.metric,
        "elapsed_s": end.seconds,
        f"{prefix}loss": end.loss,
        f"{prefix}en_dev": end.dev[end.metric],  # one TensorBoard curve per part
    }


def final_metrics(rows: Any) -> dict[str, Any]:
    """A finished trial's headline: mean zero-shot primary score over the non-English test
    languages (targets), or the English dev score (intermediates)."""
    if rows.empty:
        return {}
    primary = rows[rows["primary"]]
    out: dict[str, Any] = {}
    if primary.empty:
        return out
    out["metric"] = str(primary["metric"].iloc[0])
    if (primary["split"] == "test").any():
        zero_shot = primary[(primary["split"] == "test") & (primary["language"] != "en")]
        if not zero_shot.empty:
            out["zero_shot"] = float(zero_shot["value"].mean())
    else:
        out["en_dev"] = float(primary["value"].iloc[0])
    return out


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
        state_uploads=info.get("state_uploads", {}),  # object stores: saves, uploads, skipped...
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

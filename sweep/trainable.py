"""The only code that runs inside a Tune trial, kept thin so training runs the same without Ray."""

from __future__ import annotations

import logging
import os
from typing import Any

from ray import tune

from sweep.config import Experiment
from sweep.plan import TrialSpec
from sweep.store import ResultsStore
from sweep.trial import execute


def run_trial(params: dict[str, Any]) -> None:
    """Tune entry point: validate, execute (or reuse a finished artifact), report once."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    spec = TrialSpec.model_validate(params["spec"])  # frozen; a bad spec fails before training
    exp = Experiment.model_validate(params["experiment"])
    store = ResultsStore(params["storage"], exp.name)
    cpus = exp.resources.pretrain_cpu if spec.kind == "pretrain" else exp.resources.cpu
    os.environ["OMP_NUM_THREADS"] = str(cpus)
    rows = execute(spec, exp, store, threads=cpus)
    summary: dict[str, Any] = {"done": 1, "key": spec.key, "kind": spec.kind}
    if not rows.empty:
        primary = rows[rows["primary"]]
        summary["score"] = float(primary["value"].mean())
        summary["seconds"] = float(rows["seconds"].iloc[0])
    tune.report(summary)


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

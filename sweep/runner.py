"""Run a sweep: plan from disk, hand the DAG to one Ray Tune run, record what happened."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.config import Experiment
from sweep.plan import TrialSpec, build_plan
from sweep.store import ResultsStore

log = logging.getLogger(__name__)

PACKAGES = (
    "itx",
    "torch",
    "ray",
    "transformers",
    "tokenizers",
    "accelerate",
    "datasets",
    "pandas",
    "numpy",
    "pyarrow",
    "scipy",
    "statsmodels",
    "seqeval",
    "pydantic",
)


@dataclass
class SweepOutcome:
    run_dir: str
    planned: int
    reused: list[str] = field(default_factory=list)  # keys finished before this run started
    issued: list[str] = field(default_factory=list)  # keys handed to Tune, in release order
    errored: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def write_manifest(exp: Experiment, store: ResultsStore, trials: list[TrialSpec]) -> None:
    store.write_json(
        "manifest.json",
        {
            "name": exp.name,
            "config": exp.model_dump(mode="json"),
            "versions": versions(),
            "git_commit": git_commit(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "trials": [t.model_dump() for t in trials],
        },
    )


def run_sweep(exp: Experiment, address: str | None = None, verbose: int = 1) -> SweepOutcome:
    """Run every unfinished trial of `exp`; finished ones (DONE markers) are reused, not rerun."""
    import ray
    from ray import tune

    from sweep.searcher import DagSearcher
    from sweep.trainable import run_trial, trial_resources

    if "://" not in exp.storage:  # trials run in Tune's working dirs: relative paths would move
        absolute = str(Path(exp.storage).expanduser().resolve())
        exp = Experiment.model_validate({**exp.model_dump(), "storage": absolute})
    store = ResultsStore(exp.storage, exp.name)
    trials = build_plan(exp)
    write_manifest(exp, store, trials)
    done = {t.key for t in trials if store.is_done(t)}
    for spec in trials:
        if spec.key in done:
            store.publish(spec)
    outcome = SweepOutcome(run_dir=store.run, planned=len(trials), reused=sorted(done))
    params = {"experiment": exp.model_dump(mode="json"), "storage": exp.storage}
    searcher = DagSearcher(trials, done, params)
    if len(done) < len(trials):
        started_ray = False
        if not ray.is_initialized():
            local = address is None
            ray.init(
                address=address,
                num_cpus=(exp.resources.num_cpus or os.cpu_count()) if local else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
            started_ray = True
        try:
            tuner = tune.Tuner(
                tune.with_resources(run_trial, trial_resources),
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    num_samples=-1,
                    max_concurrent_trials=exp.resources.max_concurrent_trials,
                    reuse_actors=True,
                    trial_dirname_creator=lambda t: (
                        f"{t.config['spec']['kind']}-{t.config['spec']['key']}"
                    ),
                ),
                run_config=tune.RunConfig(
                    name="tune",
                    storage_path=_tune_storage(store),
                    failure_config=tune.FailureConfig(max_failures=exp.resources.max_failures),
                    verbose=verbose,
                ),
            )
            grid = tuner.fit()
            for result in grid:
                if result.error is not None:
                    key = result.config["spec"]["key"]
                    searcher.errored[key] = str(result.error).strip().splitlines()[-1][:500]
        finally:
            if started_ray:
                ray.shutdown()
    outcome.issued = list(searcher.issued)
    outcome.errored = dict(searcher.errored)
    outcome.skipped = dict(searcher.skipped)
    store.write_json("status.json", {"errored": outcome.errored, "skipped": outcome.skipped})
    return outcome


def _tune_storage(store: ResultsStore) -> str:
    if store.is_local:
        return store.run
    return store.uri.rstrip("/") + f"/{store.name}"


def run_status(store: ResultsStore) -> dict[str, Any]:
    """Per stage: planned, finished, errored, skipped, pending — from the store alone."""
    manifest = store.read_json("manifest.json")
    if manifest is None:
        raise FileNotFoundError(f"{store.run}: no manifest.json; is this a run folder?")
    status = store.read_json("status.json") or {"errored": {}, "skipped": {}}
    table: dict[str, dict[str, int]] = {}
    for raw in manifest["trials"]:
        spec = TrialSpec.model_validate(raw)
        row = table.setdefault(
            spec.kind, dict.fromkeys(("planned", "done", "errored", "skipped", "pending"), 0)
        )
        row["planned"] += 1
        if store.is_done(spec):
            row["done"] += 1
        elif spec.key in status["errored"]:
            row["errored"] += 1
        elif spec.key in status["skipped"]:
            row["skipped"] += 1
        else:
            row["pending"] += 1
    return table

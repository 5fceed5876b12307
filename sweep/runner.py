"""Run a sweep: plan from disk, hand the DAG to one Ray Tune run, record what happened."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import math
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from sweep.cluster import prepare_cluster, refuse_credentials_in_uri, runtime_env
from sweep.config import Experiment
from sweep.lease import check_config_unchanged
from sweep.plan import TrialSpec, build_plan
from sweep.store import ResultsStore, first_line

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
            "tasks": _task_entries(exp),
        },
    )


def _task_entries(exp: Experiment) -> dict[str, dict]:
    """What the analysis needs of each task of the run, from the registry: the report reads the
    store alone, and a task registered later than this code is still described."""
    out = {}
    for name in dict.fromkeys([*exp.intermediates, *exp.targets]):
        task = exp.task(name)
        out[name] = {
            "role": "target" if name in exp.targets else "intermediate",
            "category": task.category or None,
            "format": task.format,
            "metric": task.metric,
            "languages": exp.languages_of(task),
        }
    return out


def check_data(exp: Experiment) -> None:
    """Real data: try every (task, split, language) the sweep needs, stages before targets
    included; the first unreachable one raises `DataUnavailable` (one line: data set, language,
    how to provide it locally). Synthetic data is always there."""
    if exp.data.source != "hub":
        return
    from trainers.mixing import members_of
    from trainers.sources import check_available

    names = [
        m for name in (*exp.intermediates, *exp.targets) for m in members_of(name, exp.mixtures)
    ]
    tasks = [exp.task(name) for name in dict.fromkeys(names)]  # a mixture reads its members
    languages = {lang for t in tasks for lang in exp.languages_of(t)}
    check_available(tasks, sorted(languages), exp.data.sources)


def run_sweep(exp: Experiment, address: str | None = None, verbose: int = 1) -> SweepOutcome:
    """Run every unfinished trial of `exp`; finished ones (DONE markers) are reused, not rerun.

    Raises `StorageError` (one line) before anything starts when the storage root is unusable.
    A private local Ray is started unless `address` is given (`auto` inside `ray job submit`).
    `verbose` 1 prints Tune's status table (trials by label) every minute and at the end; 0
    leaves the log lines of sweep.progress only (they then add a status line every minute).
    """
    refuse_credentials_in_uri(exp.storage)  # before anything could copy the URI anywhere
    if "://" not in exp.storage:  # trials run in Tune's working dirs: relative paths would move
        absolute = str(Path(exp.storage).expanduser().resolve())
        exp = Experiment.model_validate({**exp.model_dump(), "storage": absolute})
    store = ResultsStore(exp.storage, exp.name)
    store.check_writable()  # before Ray starts: a typo'd bucket must not cost a cluster start
    check_data(exp)  # likewise a data set that cannot be reached: before any training
    check_config_unchanged(exp.model_dump(mode="json"), store)  # one config per run name
    import ray
    from ray import tune

    from sweep.progress import (
        SweepProgress,
        status_table,
        tracking_callbacks,
        trial_dirname,
        trial_name,
        tune_console,
    )
    from sweep.searcher import DagSearcher
    from sweep.trainable import run_trial, trial_resources
    from sweep.trial import execute

    trials = build_plan(exp)
    write_manifest(exp, store, trials)
    if exp.encoder is not None:  # a download, not GPU work: the driver fetches the hub encoder
        from trainers.sources import DataUnavailable

        try:
            execute(trials[0], exp, store)
        except OSError as err:  # unreachable hub: one line, before any trial (exit code 2)
            raise DataUnavailable(first_line(str(err))) from None
    done = {t.key for t in trials if store.is_done(t)}
    for spec in trials:
        if spec.key in done:
            store.publish(spec)
    outcome = SweepOutcome(run_dir=store.run, planned=len(trials), reused=sorted(done))
    params = {"experiment": exp.model_dump(mode="json"), "storage": exp.storage}
    from sweep.estimate import release_priority  # longest chain first, in estimated seconds

    searcher = DagSearcher(trials, done, params, cost=release_priority(exp, trials))
    to_run = len(trials) - len(done)
    progress = SweepProgress(  # with Tune's table on, only the last status line (skipped counts)
        to_run,
        len(done),
        skipped=lambda: len(searcher.skipped),
        every_s=math.inf if verbose else 60,
    )
    callbacks = [progress, *tracking_callbacks(exp)]  # a missing tracker fails before Ray starts
    if to_run:
        started_ray = False
        if not ray.is_initialized():
            local = address is None
            ray.init(
                # "local" always starts a private instance; None would join any `ray start`
                # cluster (or RAY_ADDRESS) it finds on this machine
                address=address or "local",
                num_cpus=(exp.resources.num_cpus or os.cpu_count()) if local else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
                runtime_env=runtime_env(exp.resources.cpu),
            )
            started_ray = True
        session = None
        try:
            log.info(
                "sweep %s: %d trials to run (%d finished earlier), up to %d at a time; "
                "curves: tensorboard --logdir %s/tune",
                exp.name,
                to_run,
                len(done),
                exp.resources.max_concurrent_trials,
                store.run,
            )
            # cluster checks (sweep/cluster.py): secrets, storage probed from every node
            session = prepare_cluster(
                store, address is not None, exp.resources.max_concurrent_trials
            )
            params.update(session.params())
            with tune_console():  # the engine that prints status_table, by label
                tuner = tune.Tuner(
                    tune.with_resources(run_trial, trial_resources),
                    tune_config=tune.TuneConfig(
                        search_alg=searcher,
                        num_samples=to_run,  # the searcher's count, not "infinite" (-1)
                        max_concurrent_trials=exp.resources.max_concurrent_trials,
                        reuse_actors=True,
                        trial_name_creator=trial_name,
                        trial_dirname_creator=trial_dirname,
                    ),
                    run_config=tune.RunConfig(
                        name="tune",
                        # the store's own filesystem: one code path, and endpoints set for it apply
                        storage_path=store.run,
                        storage_filesystem=store.fs,
                        failure_config=tune.FailureConfig(max_failures=exp.resources.max_failures),
                        verbose=min(verbose, 1),  # 2+ would print results with configs
                        progress_reporter=status_table(),
                        callbacks=callbacks,
                    ),
                )
                grid = tuner.fit()
            records = store.read_records()
            for result in grid:
                if result.error is not None:
                    key = result.config["spec"]["key"]
                    errors = records.get(key, {}).get("errors") or [first_line(result.error)]
                    searcher.errored[key] = errors[-1]
        finally:
            if session is not None:
                session.close(store)
            if started_ray:
                ray.shutdown()
    outcome.issued = list(searcher.issued)
    outcome.errored = dict(searcher.errored)
    outcome.skipped = dict(searcher.skipped)
    store.write_json("status.json", {"errored": outcome.errored, "skipped": outcome.skipped})
    return outcome

"""Run a sweep: plan from disk, hand the DAG to one Ray Tune run, record what happened."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import math
import os
import statistics
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
    from trainers.sources import check_available

    tasks = [exp.task(name) for name in (*exp.intermediates, *exp.targets)]
    members = [
        exp.task(member)
        for name in exp.intermediates
        if name in exp.mixtures
        for member in exp.mixtures[name].tasks
    ]
    tasks = [t for t in (*tasks, *members) if t.name not in exp.mixtures]
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


STATES = ("done", "running", "pending", "failed", "skipped")


@dataclass
class RunView:
    """What `itx status` shows, read from the store alone (works from a laptop on s3://...)."""

    stages: dict[str, dict[str, int]]  # kind -> planned and one count per STATES entry
    per_node: dict[str, int]  # node (host/short node id) -> trials run there in this run
    failures: dict[str, str]  # trial label -> first line of its last error
    skipped: dict[str, str]  # trial label -> reason
    eta_seconds: float | None  # None: no honest estimate yet (`eta_unknown` says why)
    eta_unknown: str = ""
    elapsed_seconds: float | None = None  # since the last `itx run` started; None: unknown
    running: dict[str, str] = field(default_factory=dict)  # label -> "epoch 2/5, 1m10s"
    ignored: list[str] = field(default_factory=list)  # damaged trial records, not counted


def describe_run(store: ResultsStore) -> RunView:
    """Per-stage counts, trials per node, failures and an ETA from measured trial durations.

    `running` comes from trial records, so after a driver crash a trial may show as running until
    the next `itx run` reaches it.
    """
    manifest, specs = _read_plan(store)
    status = _status_of(store)
    records = store.read_records()
    ignored = [
        f"trials/{k}.json (not a JSON object)"
        for k, r in records.items()
        if not isinstance(r, dict)
    ]
    records = {k: r for k, r in records.items() if isinstance(r, dict)}
    stages: dict[str, dict[str, int]] = {}
    per_node: dict[str, int] = {}
    failures: dict[str, str] = {}
    skipped: dict[str, str] = {}
    durations: dict[str, list[float]] = {}
    running: dict[str, str] = {}
    left: list[tuple[str, float]] = []  # (kind, seconds already spent) of unfinished trials
    for spec in specs:
        record = records.get(spec.key, {})
        if store.is_done(spec):
            state = "done"
            seconds = record.get("seconds")  # a hand-edited record may lack it: no duration
            ok = isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0
            if record.get("state") == "done" and not record.get("reused") and ok:
                durations.setdefault(spec.kind, []).append(float(seconds))
        elif spec.key in status["skipped"]:
            state = "skipped"
            skipped[spec.label] = status["skipped"][spec.key]
        elif spec.key in status["errored"] or record.get("state") == "failed":
            state = "failed"
            errors = record.get("errors") or [status["errored"].get(spec.key, "")]
            failures[spec.label] = str(errors[-1] if isinstance(errors, list) else errors)[:300]
        elif record.get("state") == "running":
            state = "running"
            left.append((spec.kind, _age(record.get("started"))))
            detail = [str(record["progress"])[:120]] if record.get("progress") else []
            running[spec.label] = ", ".join([*detail, duration(left[-1][1])])
        else:
            state = "pending"
            left.append((spec.kind, 0.0))
        row = stages.setdefault(spec.kind, {"planned": 0, **dict.fromkeys(STATES, 0)})
        row["planned"] += 1
        row[state] += 1
        if record and state in ("done", "running", "failed") and not record.get("reused"):
            node = f"{str(record.get('host', '?'))[:64]}/{str(record.get('node_id') or '?')[:8]}"
            per_node[node] = per_node.get(node, 0) + 1
    concurrency = (manifest.get("config", {}).get("resources") or {}).get("max_concurrent_trials")
    concurrency = concurrency if isinstance(concurrency, int) and concurrency > 0 else 1
    eta, unknown = _eta(durations, left, concurrency)
    ended = [r["finished"] for r in records.values() if isinstance(r.get("finished"), str)]
    elapsed = _age(manifest.get("created"))
    if not left and ended and manifest.get("created"):  # finished: the run's span, not "so far"
        elapsed = max(elapsed - _age(max(ended)), 0.0)
    return RunView(
        stages, per_node, failures, skipped, eta, unknown, elapsed, running, sorted(ignored)
    )


class RunDamaged(ValueError):
    """A run folder whose manifest cannot be read as a plan; the message is one line."""


def _read_plan(store: ResultsStore) -> tuple[dict, list[TrialSpec]]:
    """The manifest and its trials; FileNotFoundError without one, RunDamaged when unusable."""
    from pydantic import ValidationError

    from trainers.runfiles import manifest_problem

    try:
        manifest = store.read_json("manifest.json")
    except (OSError, ValueError, RecursionError) as err:
        raise RunDamaged(f"{store.run}: manifest.json unreadable ({first_line(err)})") from None
    if manifest is None:
        raise FileNotFoundError(f"{store.run}: no manifest.json; is this a run folder?")
    problem = manifest_problem(manifest)
    if problem is None:
        try:
            return manifest, [TrialSpec.model_validate(raw) for raw in manifest["trials"]]
        except ValidationError as err:
            first = err.errors()[0]
            problem = f"a trial's {'.'.join(map(str, first['loc']))}: {first['msg']}"
    raise RunDamaged(f"{store.run}: manifest.json {problem}; rerun `itx run` to rewrite it")


def _status_of(store: ResultsStore) -> dict[str, dict[str, str]]:
    """status.json's errored and skipped trials; a damaged file counts as empty (it is rewritten
    at the end of every sweep)."""
    try:
        status = store.read_json("status.json")
    except (OSError, ValueError, RecursionError):
        status = None
    clean: dict[str, dict[str, str]] = {"errored": {}, "skipped": {}}
    for part in clean:
        value = status.get(part) if isinstance(status, dict) else None
        if isinstance(value, dict):
            clean[part] = {str(k): str(v)[:300] for k, v in value.items()}
    return clean


def _age(started: object) -> float:
    """Seconds since an ISO time; 0 for a missing or damaged one (the ETA then assumes none)."""
    try:
        then = dt.datetime.fromisoformat(started) if isinstance(started, str) else None
    except ValueError:
        then = None
    if then is None:
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.UTC)
    return max((dt.datetime.now(dt.UTC) - then).total_seconds(), 0.0)


def _eta(
    durations: dict[str, list[float]], left: list[tuple[str, float]], concurrency: int
) -> tuple[float | None, str]:
    """Remaining work (median duration per stage, minus time already spent) over concurrency.

    Never a false zero: a stage with trials left but none finished in this run has no estimate
    (another stage's durations say nothing: a cached pretraining takes a second, a target
    minutes), and running trials already past their stage's median make the rest unknown too.
    """
    if not left:
        return 0.0, ""
    unmeasured = sorted({kind for kind, _ in left if not durations.get(kind)})
    if unmeasured:
        return None, f"no {'/'.join(unmeasured)} trial of this run has finished yet"
    work = 0.0
    for kind, spent in left:
        remaining = statistics.median(durations[kind]) - spent
        if remaining <= 0:
            return None, f"a running {kind} trial has run longer than the stage's median"
        work += remaining
    return work / max(1, min(concurrency, len(left))), ""


def duration(seconds: float) -> str:
    """'45 s', '2m10s', '1h05m': a status line's time, never rounded down to zero minutes."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"

"""What `itx status` shows, read from the store alone (works from a laptop on an s3:// run).

Reads the manifest, status.json, the trial records and the DONE markers; never Ray.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from dataclasses import dataclass, field

from sweep.plan import TrialSpec
from sweep.store import ResultsStore, first_line

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
    may_skip = _restarts_unhealthy(manifest)
    for spec in specs:
        record = records.get(spec.key, {})
        done = store.is_done(spec)
        why = _skipped_when_done(store, spec) if done and may_skip else None
        if why is not None:  # finished without training: an unhealthy intermediate's child
            state = "skipped"
            skipped[spec.label] = why
        elif done:
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


def _restarts_unhealthy(manifest: dict) -> bool:
    """Whether the run's health policy skips the children of unhealthy intermediates."""
    health = (manifest.get("config") or {}).get("health")
    return isinstance(health, dict) and health.get("policy") == "restart"


def _skipped_when_done(store: ResultsStore, spec: TrialSpec) -> str | None:
    """The reason a finished trial was skipped (sweep.trial writes it beside DONE), or None.

    Only a trial read from an intermediate or a stage can be (a stage of a skipped parent is
    skipped, and so are its targets): one existence check each, none for the others."""
    if spec.kind not in ("target", "stage") or spec.parent_kind not in ("intermediate", "stage"):
        return None
    return store.skipped_reason(store.artifact(spec))


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

"""Checks of the run-folder files that both `itx status` (sweep) and `itx report` (analysis) read:
one place, so a damaged file is refused alike by both, in one line, never a traceback."""

from __future__ import annotations

from typing import Any

from trainers.paths import check_name, excerpt

# every kind of trial a plan holds (sweep.plan.Kind is built from this tuple)
TRIAL_KINDS = ("pretrain", "intermediate", "null", "stage", "target")


def manifest_problem(manifest: Any) -> str | None:
    """What makes a manifest unusable (one phrase), or None: the parts status and report read."""
    if not isinstance(manifest, dict):
        return f"is not a JSON object (a {type(manifest).__name__})"
    config = manifest.get("config", {})
    if not isinstance(config, dict):
        return f"config is not an object (got {excerpt(config)})"
    for part in ("world", "resources", "difficulty", "data"):
        if not isinstance(config.get(part, {}), dict):
            return f"config.{part} is not an object (got {excerpt(config[part])})"
    if not isinstance((config.get("world") or {}).get("languages", []), list):
        return "config.world.languages is not a list"
    tasks = manifest.get("tasks", {})
    if not isinstance(tasks, dict) or not all(isinstance(v, dict) for v in tasks.values()):
        return "tasks is not an object of objects"
    trials = manifest.get("trials")
    if not isinstance(trials, list):
        return f"trials is not a list (got {excerpt(trials)})"
    for i, trial in enumerate(trials):
        if not isinstance(trial, dict):
            return f"trials[{i}] is not an object (got {excerpt(trial)})"
        try:
            check_name(trial.get("key"))
        except ValueError as err:
            return f"trials[{i}].key: {err}"
        if trial.get("kind") not in TRIAL_KINDS:
            return (
                f"trials[{i}].kind {excerpt(trial.get('kind'))} is unknown; "
                f"allowed: {', '.join(TRIAL_KINDS)}"
            )
    return None

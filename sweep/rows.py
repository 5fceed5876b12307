"""A trial's result rows and fit records, in sweep.schema's columns: what sweep.trial writes
for each fine-tune and evaluation (the store writes them with the schema)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sweep.config import Experiment
from sweep.plan import TrialSpec
from sweep.schema import BASELINE, FIT_COLUMNS, OPTIONAL_COLUMNS, ROW_COLUMNS, ROW_DTYPES, SCRATCH
from trainers.tasks import Task

if TYPE_CHECKING:
    from trainers.loop import Outcome


def fit_columns(spec: TrialSpec, fits: list[dict[str, Any]]) -> dict[str, Any]:
    """The row columns of the trial's fine-tune: its kept main attempt, and health overall."""
    kept = [f for f in fits if f.get("kept")]
    main = next(f for f in kept if f["part"] == "main")
    return {
        "dev_score": main["dev_score"],
        "best_epoch": main["best_epoch"],
        "steps": main["steps"],
        "loss_start": main["loss_start"],
        "loss_end": main["loss_end"],
        "healthy": all(f["healthy"] for f in kept if f["part"] != "null"),
        "restarts": max(f["attempt"] for f in fits if f["part"] == "main"),
        "restart_seed": main["restart_seed"],
    }


def fit_records(spec: TrialSpec, fits: list[dict[str, Any]]) -> pd.DataFrame:
    """The trial's fit records (sweep.schema FIT_COLUMNS), one per fine-tune attempt."""
    identity = {
        "trial_key": spec.key,
        "kind": spec.kind,
        "intermediate": spec.intermediate,
        "seed": spec.seed,
        "target_task": spec.target_task,
    }
    records = [{**identity, "kept": False, **f} for f in fits]
    return pd.DataFrame.from_records(records, columns=list(FIT_COLUMNS))


def no_rows() -> pd.DataFrame:
    """A trial's rows when it wrote none (skipped): zero rows in the schema's dtypes."""
    return pd.DataFrame(columns=list(ROW_COLUMNS)).astype(ROW_DTYPES)


def result_rows(
    spec: TrialSpec,
    exp: Experiment,
    task: Task,
    outcome: Outcome,
    *,
    scores: dict[str, dict[str, float]],
    split: str,
    sha: str,
    majority: dict[str, dict[str, float]] | None = None,
    fit: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The trial's result rows: one per language and metric of `scores` (a `split`'s scores),
    `sha` the encoder evaluated, `majority` the majority-label baseline per language, `fit`
    the fine-tune columns (dev score, steps, health; fit_columns)."""
    from trainers.metrics import primary_metric
    from trainers.tasks import shares_training_data

    primary = primary_metric(task.metric_family)
    shared = (
        spec.kind == "target"
        and spec.intermediate not in (BASELINE, SCRATCH)
        and shares_training_data(exp.task(spec.intermediate), task)
    )
    fit = {**OPTIONAL_COLUMNS, **(fit or {})}
    records = []
    for lang, by_metric in scores.items():
        for metric, value in by_metric.items():
            records.append(
                {
                    "kind": spec.kind,
                    "intermediate": spec.intermediate,
                    "seed": spec.seed,
                    "target_task": spec.target_task,
                    "language": lang,
                    "split": split,
                    "metric": metric,
                    "value": float(value),
                    "n_examples": outcome.n_dev if split == "dev" else outcome.n_test[lang],
                    "primary": metric == primary,
                    "chance": task.chance if metric == "accuracy" else np.nan,
                    "majority": (majority or {}).get(lang, {}).get(metric, np.nan),
                    "train_size": outcome.n_train,  # after size matching, malformed dropped
                    "trial_key": spec.key,
                    "encoder_sha": sha,
                    "seconds": outcome.seconds,
                    "shared_training_data": shared,
                    **fit,
                }
            )
    return pd.DataFrame.from_records(records, columns=list(ROW_COLUMNS)).astype(ROW_DTYPES)

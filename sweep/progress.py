"""What a user sees of a running sweep: Tune's status table and one log line per trial event,
both naming trials by label (stage / intermediate / target / seed), never by Ray id.

Tune's table comes from its `CLIReporter` (`status_table`), printed every minute and at the end
(tests/fixtures/slice.yaml, the end; README, "Following a sweep"):

    Number of trials: 6/6 (6 TERMINATED)
    | Trial name                     | status     | loc   | key              |   en dev | ...
    | intermediate/topic_easy/seed=0 | TERMINATED | ...   | b2e2b7d5a1d73f49 |  0.15625 | ...

Its default console engine (Ray 2.x) ignores a custom reporter and, at its default verbosity,
prints every trial's whole config when the trial starts (most of a demo log before), so the
legacy engine is selected for the run (`tune_console`), as Ray's own RLlib examples do for
the same reason (rllib/examples/utils.py). At verbosity 1 it prints the table only, never a
config. This callback logs, through `logging`:

    start target/topic_easy/nli/seed=0 [3 of 9]
    target/topic_easy/nli/seed=0 epoch 2/5: loss 0.412, en dev accuracy 0.731 (12 s)
    done target/topic_easy/nli/seed=0 in 31 s: zero-shot accuracy 0.602
    status after 2m10s: 3 done, 2 running, 4 waiting, 0 failed

Tune names trials by label (`trial_name`), so its table, error messages and MLflow runs carry
the label; the trial folders (TensorBoard's run names) start with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from ray.tune import Callback, CLIReporter

from sweep.config import Experiment
from sweep.plan import TrialSpec
from sweep.status import duration

log = logging.getLogger(__name__)


def trial_name(trial: Any) -> str:
    """Tune's `trial_name_creator`: the label (kind/intermediate/target/seed=N), not a Ray id."""
    return TrialSpec.model_validate(trial.config["spec"]).label


def trial_dirname(trial: Any) -> str:
    """Tune's `trial_dirname_creator`: the label, then the key (unique and stable), e.g.
    `target-topic_easy-nli-seed=0-87ce805fe7d77ff9`; TensorBoard names its runs by it."""
    spec = TrialSpec.model_validate(trial.config["spec"])
    return f"{spec.label.replace('/', '-')}-{spec.key}"


# Tune's table: the per-epoch English dev score while a trial trains, then its headline
# (zero-shot score of a target, English dev of an intermediate); the key finds its artifact
TABLE_METRICS = {"epoch": "epoch", "en_dev": "en dev", "zero_shot": "zero-shot", "metric": "metric"}
TABLE_PARAMETERS = {"spec/key": "key"}  # empty would mean every config entry, flattened


def status_table(every_s: float = 60.0) -> CLIReporter:
    """Tune's status table: one row per trial started so far, named by label."""
    return CLIReporter(
        metric_columns=dict(TABLE_METRICS),
        parameter_columns=dict(TABLE_PARAMETERS),
        max_report_frequency=int(every_s),
        print_intermediate_tables=True,  # verbosity 1 would print only the counts till the end
        max_progress_rows=40,  # the demo's 33 trials in one table
    )


@contextlib.contextmanager
def tune_console() -> Iterator[None]:
    """Tune's legacy console engine while the sweep runs (the only one that prints a custom
    `progress_reporter`); the variable is restored after."""
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = before


def epoch_line(label: str, result: dict[str, Any]) -> str:
    """One epoch of a trial, from the metrics the trainable reports after each epoch."""
    part = result.get("part", "")
    prefix = part_prefix(part)
    return (
        f"{label}{f' ({part})' if part else ''} epoch {result['epoch']}/{result['epochs']}: "
        f"loss {result[prefix + 'loss']:.3f}, en dev {result['metric']} "
        f"{result[prefix + 'en_dev']:.3f} ({duration(result['elapsed_s'])})"
    )


def part_prefix(part: str) -> str:
    """Metric prefix of a trial's part: '' for its own task, 'null_model/', 'siqa/'."""
    return f"{part.replace(' ', '_')}/" if part else ""


def done_line(label: str, result: dict[str, Any]) -> str:
    parts = [f"done {label}"]
    if result.get("reused"):
        return f"{parts[0]}: finished in an earlier run, reused"
    if "seconds" in result:
        parts.append(f"in {duration(result['seconds'])}")
    line = " ".join(parts)
    if "zero_shot" in result:
        line += f": zero-shot {result['metric']} {result['zero_shot']:.3f}"
    elif "en_dev" in result:
        line += f": en dev {result['metric']} {result['en_dev']:.3f}"
    return line


class SweepProgress(Callback):
    """Logs trial starts, epochs, ends and errors by label, and a status line every `every_s`."""

    def __init__(
        self,
        to_run: int,
        reused: int,
        skipped: Callable[[], int] = lambda: 0,
        every_s: float = 60.0,
    ) -> None:
        """`skipped` counts trials that will never run (a parent failed): the searcher's."""
        self.to_run, self.reused, self.skipped, self.every_s = to_run, reused, skipped, every_s
        self.started = time.monotonic()
        self.last_status = self.started
        self.numbers: dict[str, int] = {}  # trial id -> its start order, 1-based

    def setup(self, **info: Any) -> None:
        self.started = self.last_status = time.monotonic()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        number = self.numbers.setdefault(trial.trial_id, len(self.numbers) + 1)
        log.info("start %s [%d of %d]", trial, number, self.to_run)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if not result.get("done") and "epoch" in result:
            log.info("%s", epoch_line(str(trial), result))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        log.info("%s", done_line(str(trial), trial.last_result or {}))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        log.warning("failed %s; error file: %s", trial, trial.error_file)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        failures = trial.run_metadata.num_failures
        log.warning(
            "retrying %s after failure %d; error file: %s", trial, failures, trial.error_file
        )

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self.last_status >= self.every_s:
            self.last_status = now
            log.info("%s", self.status_line(trials, now))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        log.info("%s", self.status_line(trials, time.monotonic()))

    def status_line(self, trials: list, now: float) -> str:
        counts = {"TERMINATED": 0, "RUNNING": 0, "ERROR": 0}
        for trial in trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
        skipped = self.skipped()
        ended = counts["TERMINATED"] + counts["RUNNING"] + counts["ERROR"] + skipped
        running = ", ".join(str(t) for t in trials if t.status == "RUNNING")
        reused = f" (+{self.reused} reused)" if self.reused else ""
        return (
            f"status after {duration(now - self.started)}: {counts['TERMINATED']} done{reused}, "
            f"{counts['RUNNING']} running, {max(self.to_run - ended, 0)} waiting, "
            f"{counts['ERROR']} failed"
            + (f", {skipped} skipped" if skipped else "")
            + (f"; running: {running}" if running else "")
        )


def tracking_callbacks(exp: Experiment) -> list[Callback]:
    """Ray Tune's own logger callbacks for the trackers switched on in `tracking:`."""
    mlflow = exp.tracking.mlflow
    if mlflow is None:
        return []
    try:
        import mlflow as _  # noqa: F401  (the callback imports it only in setup)
        from ray.air.integrations.mlflow import MLflowLoggerCallback
    except ImportError:
        raise TrackingUnavailable(
            "tracking.mlflow: MLflow is not installed; pip install 'itx[tracking]' "
            "(mlflow-skinny), or remove tracking.mlflow"
        ) from None
    if mlflow.tracking_uri.startswith("file:"):
        # MLflow 3 refuses its file store unless asked; a file: URI in the config is that ask
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return [
        MLflowLoggerCallback(
            tracking_uri=mlflow.tracking_uri,
            experiment_name=mlflow.experiment_name or exp.name,
            tags={"sweep": exp.name},
        )
    ]


class TrackingUnavailable(RuntimeError):
    """A tracker is switched on in the config but cannot be used; the message is one line."""

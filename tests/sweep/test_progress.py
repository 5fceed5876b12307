"""The lines a user reads while a sweep runs (tests/sweep/test_e2e.py checks them on a real run)."""

import os
from types import SimpleNamespace

import pytest

from sweep.config import parse_config
from sweep.plan import TrialSpec
from sweep.progress import (
    SweepProgress,
    TrackingUnavailable,
    done_line,
    epoch_line,
    tracking_callbacks,
    trial_dirname,
    trial_name,
    tune_console,
)
from sweep.trainable import epoch_metrics, final_metrics
from trainers.loop import EpochEnd

SPEC = TrialSpec(key="abc123", kind="intermediate", intermediate="topic_easy", seed=0, parent="p")
LABEL = "intermediate/topic_easy/seed=0"


def end(**changes) -> EpochEnd:
    values = dict(
        task="topic_easy",
        epoch=1,
        epochs=5,
        step=40,
        loss=0.41234,
        dev={"accuracy": 0.7312},
        metric="accuracy",
        seconds=72.4,
        null_model=False,
    )
    return EpochEnd(**{**values, **changes})


def test_trials_are_named_by_label_and_stored_by_kind_and_key():
    trial = SimpleNamespace(config={"spec": SPEC.model_dump()})
    assert trial_name(trial) == LABEL
    assert trial_dirname(trial) == "intermediate-topic_easy-seed=0-abc123"


def test_an_epoch_is_one_line_and_one_tensorboard_point_per_part():
    result = epoch_metrics(SPEC, end())
    assert result["done"] == 0 and result["epoch"] == 2  # 1-based for people
    assert result["en_dev"] == 0.7312 and result["loss"] == 0.41234
    assert epoch_line(LABEL, result) == (
        f"{LABEL} epoch 2/5: loss 0.412, en dev accuracy 0.731 (1m12s)"
    )
    null = epoch_metrics(SPEC, end(null_model=True, dev={"accuracy": 0.25}))
    assert "en_dev" not in null and null["null_model/en_dev"] == 0.25  # its own curve
    assert epoch_line(LABEL, null).startswith(f"{LABEL} (null model) epoch 2/5: loss 0.412")
    stage = epoch_metrics(SPEC.model_copy(update={"intermediate": "xcopa"}), end(task="siqa"))
    assert stage["part"] == "siqa" and "siqa/en_dev" in stage


def test_a_finished_target_reports_zero_shot_without_english():
    import pandas as pd

    rows = pd.DataFrame(
        {
            "language": ["en", "ov80", "fake", "ov80"],
            "split": "test",
            "metric": ["accuracy", "accuracy", "accuracy", "f1"],
            "value": [0.9, 0.6, 0.4, 0.1],
            "primary": [True, True, True, False],
        }
    )
    # by hand: mean of ov80 0.6 and fake 0.4; English (0.9) and the non-primary f1 left out
    assert final_metrics(rows) == {"metric": "accuracy", "zero_shot": 0.5}
    label = "target/none/nli/seed=0"
    line = done_line(label, {**final_metrics(rows), "done": 1, "seconds": 31.0})
    assert line == f"done {label} in 31 s: zero-shot accuracy 0.500"
    assert done_line(label, {"done": 1, "reused": 1}).endswith("finished in an earlier run, reused")


def test_status_line_counts_skipped_trials_as_never_waiting():
    class Trial(SimpleNamespace):
        def __str__(self) -> str:
            return self.label

    progress = SweepProgress(to_run=6, reused=2, skipped=lambda: 2)
    trials = [
        Trial(status="TERMINATED", label="pretrain"),
        Trial(status="ERROR", label=LABEL),
        Trial(status="RUNNING", label="target/none/nli/seed=0"),
    ]
    # by hand: 6 to run = 1 done + 1 running + 1 failed + 2 skipped + 1 still waiting
    assert progress.status_line(trials, progress.started + 130) == (
        "status after 2m10s: 1 done (+2 reused), 1 running, 1 waiting, 1 failed, 2 skipped; "
        "running: target/none/nli/seed=0"
    )


@pytest.mark.parametrize("before", [None, "1"])
def test_the_legacy_console_is_chosen_only_while_tune_runs(monkeypatch, before):
    from ray.tune.experimental.output import get_air_verbosity

    if before is None:
        monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    else:
        monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", before)
    assert get_air_verbosity(1) is not None  # Tune's default engine: ignores status_table
    with tune_console():
        assert get_air_verbosity(1) is None  # the legacy one, which prints it
    assert os.environ.get("RAY_AIR_NEW_OUTPUT") == before


def test_tracking_is_off_by_default_and_mlflow_when_switched_on(tmp_path):
    base = {"name": "t", "intermediates": ["topic_easy"], "targets": ["nli"], "seeds": [0]}
    base["languages"] = ["en", "ov80"]
    assert tracking_callbacks(parse_config(base)) == []
    uri = (tmp_path / "mlruns").as_uri()
    exp = parse_config({**base, "tracking": {"mlflow": {"tracking_uri": uri}}})
    (callback,) = tracking_callbacks(exp)
    assert type(callback).__name__ == "MLflowLoggerCallback"
    assert callback.tracking_uri == uri and callback.experiment_name == "t"


def test_a_missing_tracker_is_one_line(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow":
            raise ImportError("no module named mlflow")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    base = {"name": "t", "intermediates": ["topic_easy"], "targets": ["nli"], "seeds": [0]}
    raw = {**base, "languages": ["en"], "tracking": {"mlflow": {"tracking_uri": "file:///x"}}}
    with pytest.raises(TrackingUnavailable, match=r"^tracking\.mlflow: MLflow is not installed; "):
        tracking_callbacks(parse_config(raw))

"""A small sweep through real Ray Tune (not mocked), from config to results store."""

import contextlib
import io
import logging
import os
from pathlib import Path

import pandas as pd
import pytest

from analysis.gains import difficulty_table
from analysis.report import write_report
from sweep.config import load_config
from sweep.plan import build_plan
from sweep.runner import run_sweep
from sweep.status import describe_run
from sweep.store import ResultsStore
from sweep.trial import file_sha
from tests.conftest import COUNTS

pytestmark = pytest.mark.slow
SECRET = "itx-planted-secret-7f3a9c"


@pytest.fixture(scope="module")
def sweep(root, tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep")
    # a relative storage root, as in configs/demo.yaml: trials run in Tune's own working dirs
    # MLflow through its local file store, which needs no server
    tracking = {"mlflow": {"tracking_uri": (base / "mlruns").as_uri()}}
    exp = load_config(
        root / "tests" / "fixtures" / "tiny.yaml", {"storage": "store", "tracking": tracking}
    )
    cwd = Path.cwd()
    os.chdir(base)
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET  # planted: must not reach any output file
    progress = logging.getLogger("sweep.progress")
    PROGRESS_LINES.clear()
    handler = _Lines()
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    console = io.StringIO()  # what the driver printed: Tune's status table
    try:
        with contextlib.redirect_stdout(console):
            first = run_sweep(exp, verbose=1)
        write_report(str(base / "store" / exp.name))
    finally:
        progress.removeHandler(handler)
        os.chdir(cwd)
        del os.environ["AWS_SECRET_ACCESS_KEY"]
    CONSOLE[:] = console.getvalue().splitlines()
    return exp.model_copy(update={"storage": str(base / "store")}), base / "store", first


PROGRESS_LINES: list[str] = []  # what sweep.progress logged during the sweep above
CONSOLE: list[str] = []  # what the driver printed during it


class _Lines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        PROGRESS_LINES.append(record.getMessage())


def test_progress_names_trials_by_label_with_a_line_per_epoch(sweep):
    exp, _, _ = sweep
    labels = {t.label for t in build_plan(exp)}
    starts = [line for line in PROGRESS_LINES if line.startswith("start ")]
    started = {line.split(" [")[0].removeprefix("start ") for line in starts}
    assert started == labels  # every trial, by label; no Ray ids (run_trial_784d12ee)
    assert not any("run_trial_" in line for line in PROGRESS_LINES)
    epochs = [line for line in PROGRESS_LINES if " epoch " in line]
    # tiny.yaml: 1 epoch; intermediates also train a null model (V-information); Tatoeba-like
    # formats that do not train have no epochs, but tiny's targets (nli, pos) all train
    assert len(epochs) == 2 * 2 + 8
    line = next(e for e in epochs if e.startswith("intermediate/topic_easy/seed=0 epoch 1/1"))
    assert "loss " in line and "en dev accuracy 0." in line
    done = [line for line in PROGRESS_LINES if line.startswith("done target/")]
    assert len(done) == 8 and all("zero-shot " in line for line in done)


def test_tunes_status_table_names_trials_by_label_and_dumps_no_config(sweep):
    exp, store, _ = sweep
    plan = build_plan(exp)
    last = max(i for i, line in enumerate(CONSOLE) if line.startswith("Number of trials: "))
    assert CONSOLE[last] == f"Number of trials: {len(plan)}/{len(plan)} ({len(plan)} TERMINATED)"
    header = CONSOLE[last + 2]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "Trial name", "status", "loc", "key", "en dev", "zero-shot", "metric"
    ]  # fmt: skip
    rows = {}
    for line in CONSOLE[last + 4 : last + 4 + len(plan)]:
        name, status, _, key, *metrics = [c.strip() for c in line.strip("|").split("|")]
        rows[name] = (status, key, metrics)
    assert set(rows) == {t.label for t in plan}  # by label: no run_trial_784d12ee
    assert all(rows[t.label][:2] == ("TERMINATED", t.key) for t in plan)
    target = next(t for t in plan if t.kind == "target" and t.intermediate == "none")
    rows_of = pd.read_parquet(store / exp.name / "results" / f"{target.key}.parquet")
    primary = rows_of[rows_of["primary"] & (rows_of["split"] == "test")]
    zero_shot = primary.loc[primary["language"] != "en", "value"].mean()
    assert float(rows[target.label][2][1]) == pytest.approx(zero_shot, abs=1e-5)
    printed = "\n".join(CONSOLE)
    assert "run_trial_" not in printed
    assert "started with configuration" not in printed and "experiment/" not in printed


def test_mlflow_file_store_holds_a_run_per_trial_with_epoch_curves(sweep):
    from mlflow.tracking import MlflowClient

    exp, storage, _ = sweep
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient((storage.parent / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tiny")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {t.label for t in build_plan(exp)}
    intermediate = runs["intermediate/topic_easy/seed=0"]
    history = client.get_metric_history(intermediate.info.run_id, "en_dev")
    # one point per epoch (1), then the final report's English dev score
    assert len(history) == 2 and history[0].value == history[1].value
    target = runs["target/none/nli/seed=0"]
    assert 0 <= target.data.metrics["zero_shot"] <= 1
    assert target.info.status == "FINISHED"


def test_every_trial_finished_without_errors(sweep):
    exp, storage, first = sweep
    assert first.errored == {} and first.skipped == {}
    table = describe_run(ResultsStore(str(storage), exp.name)).stages
    assert table["intermediate"] == {
        "planned": 2,
        "done": 2,
        "running": 0,
        "pending": 0,
        "failed": 0,
        "skipped": 0,
    }
    assert table["target"]["done"] == 8  # (2 intermediates + none + scratch) x 1 seed x 2 targets


def test_each_intermediate_and_seed_trained_exactly_once(sweep):
    exp, storage, first = sweep
    trials = {t.key: t for t in build_plan(exp)}
    issued = [trials[k] for k in first.issued]
    pairs = [(t.intermediate, t.seed) for t in issued if t.kind == "intermediate"]
    assert sorted(pairs) == [("topic_easy", 0), ("topic_hard", 0)]
    assert len(list(storage.glob("artifacts/intermediate/*/model.safetensors"))) == 2


def test_every_target_trial_read_its_parents_encoder(sweep):
    exp, storage, _ = sweep
    rows = pd.concat(pd.read_parquet(f) for f in (storage / exp.name / "results").glob("*.parquet"))
    written = rows[rows.kind == "intermediate"].groupby("intermediate").encoder_sha.first()
    pretrained = file_sha(
        next((storage / "artifacts" / "pretrain").glob("*")) / "model.safetensors"
    )
    targets = rows[rows.kind == "target"]
    for (name, _seed), group in targets.groupby(["intermediate", "seed"]):
        expected = {"none": pretrained, "scratch": "random"}.get(name, written.get(name))
        assert set(group.encoder_sha) == {expected}, name
    # a fine-tuned encoder differs from the pretrained one it started from
    assert pretrained not in set(written)
    assert set(targets.language) == {"en", "ov80", "fake"}
    assert set(targets.metric) == {"accuracy", "f1", "token_accuracy"}


def test_rerun_trains_nothing_and_reuses_every_trial(sweep):
    exp, _, first = sweep
    again = run_sweep(exp, verbose=0)
    assert again.issued == []
    assert len(again.reused) == first.planned


def test_credentials_from_the_environment_reach_no_output_file(sweep):
    _, storage, _ = sweep
    files = [p for p in storage.rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in files) and len(files) > 30
    COUNTS["output files grepped for a planted secret"] += len(files)
    leaks = [p for p in files if SECRET.encode() in p.read_bytes()]
    assert leaks == []


def test_difficulty_measures_are_recorded_per_intermediate_and_seed(sweep):
    exp, storage, _ = sweep
    rows = pd.concat(pd.read_parquet(p) for p in (storage / "tiny" / "results").glob("*.parquet"))
    dev = rows[rows.kind == "intermediate"]
    for name in ("topic_easy", "topic_hard"):
        metrics = set(dev[dev.intermediate == name].metric)
        assert metrics == {"accuracy", "log2_prob"}, metrics
        null = rows[(rows.kind == "null") & (rows.intermediate == name)]
        assert set(null.metric) == {"null_log2_prob"}  # its own trial, beside the intermediate
    assert difficulty_table(rows).v_information.notna().all()
    assert set(dev.train_size) == {exp.data.train}  # size matched: the same N for both
    assert not rows.shared_training_data.any()  # no synthetic pair shares training data
    embedded = {p.stem for p in (storage / "tiny" / "task_embeddings").glob("*.json")}
    assert embedded == {"topic_easy", "topic_hard", "nli", "pos"}
    report = (storage / "tiny" / "report.md").read_text()
    assert "Difficulty measures" in report and "Task similarity" in report

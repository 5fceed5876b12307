"""The store on a local S3 server (moto) and on folders: writability checked before anything runs,
versioned training state, trial records, and `itx status` read from the store alone."""

import datetime as dt
import json
import logging
import os
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweep.cli import app
from sweep.config import load_config
from sweep.plan import build_plan
from sweep.runner import describe_run, run_status, run_sweep, write_manifest
from sweep.store import ResultsStore, StorageError
from sweep.trial import TrainingState


@pytest.fixture(scope="module")
def s3_endpoint():
    yield from moto_s3()


def moto_s3():
    """A local S3 server (moto) with bucket `itx`; credentials only in this process's env."""
    pytest.importorskip("moto", reason="moto[server] not installed: add it to the dev extras")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # Ray nodes started after this inherit it, like an instance profile
    boto3.client("s3").create_bucket(Bucket="itx")
    yield "s3://itx"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def tiny(root, tmp_path):
    return load_config(root / "tests" / "fixtures" / "tiny.yaml", {"storage": str(tmp_path)})


# ---- writability: one line, before Ray ----------------------------------------------------------
def test_unwritable_storage_fails_with_one_line_before_any_trial(root, tmp_path):
    import ray

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    exp = load_config(
        root / "tests" / "fixtures" / "tiny.yaml", {"storage": str(blocker / "store")}
    )
    with pytest.raises(StorageError, match=r"^storage '.*a-file/store' is not writable: ") as err:
        run_sweep(exp, verbose=0)
    assert "\n" not in str(err.value) and not ray.is_initialized()

    config = root / "tests" / "fixtures" / "tiny.yaml"
    result = CliRunner().invoke(app, ["run", str(config), "--storage", str(blocker / "store")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: storage ")
    assert not (blocker.parent / "store").exists()


def test_missing_bucket_fails_with_one_line(s3_endpoint):
    store = ResultsStore("s3://no-such-bucket/root", "run")
    with pytest.raises(
        StorageError, match=r"not writable: OSError: Bucket 'no-such-bucket' not found"
    ) as err:
        store.check_writable()
    assert "\n" not in str(err.value) and "testing" not in str(err.value)  # no credentials


# ---- the object-store path -----------------------------------------------------------------------
def test_rows_records_and_sizes_on_s3(s3_endpoint, tiny):
    exp = tiny.model_copy(update={"storage": f"{s3_endpoint}/rows"})
    store = ResultsStore(exp.storage, exp.name)
    store.check_writable()
    assert store.size() == 0  # the probe is deleted
    spec = build_plan(exp)[1]
    import pandas as pd

    from tests.conftest import result_row

    rows = pd.DataFrame([result_row(value=1.0)])
    assert not store.is_done(spec)
    store.write_rows(spec, rows)
    assert store.is_done(spec) and store.read_rows(spec)["value"].tolist() == [1.0]
    store.write_record(spec.key, {"state": "done", "seconds": 2.5})
    assert store.read_records() == {spec.key: {"state": "done", "seconds": 2.5}}
    data = len(store.read_bytes(f"{store.artifact(spec)}/rows.parquet"))
    assert store.size("artifacts") == data + len(b"ok\n")


def test_training_state_is_versioned_and_latest_always_complete(s3_endpoint, tiny, tmp_path):
    exp = tiny.model_copy(update={"storage": f"{s3_endpoint}/state"})
    store = ResultsStore(exp.storage, exp.name)
    spec = build_plan(exp)[1]
    with TrainingState(spec, store, interval=3600) as state:  # no thread tick: pushed by hand
        assert state.resumed_from == 0 and state.path.is_dir()
        save(state.path, step=4, weights=b"w4")
        assert state.push_if_new() and not state.push_if_new()  # nothing new the second time
        save(state.path, step=8, weights=b"w8")
        assert state.push_if_new()
        # caught mid-save: new weights, old progress.json -> not uploaded
        (state.path / "state" / "model.bin").write_bytes(b"w12")
        assert not state.push_if_new()
        (state.path / "state" / "model.bin").write_bytes(b"w8")
        # progress.json of a newer save beside the state folder of step 8: not uploaded
        (state.path / "progress.json").write_text(json.dumps({"step": 12}))
        assert not state.push_if_new()
        # caught with the state folder emptied under it: not uploaded, and no error either
        # (an error here once killed the mirror thread for the rest of a trial)
        for file in (state.path / "state").iterdir():
            file.unlink()
        assert not state.push_if_new()
    assert not state.path.exists()  # the node-local copy is gone; the store has the state
    versions = sorted(p.rsplit("/", 1)[-1] for p in list_dir(store, store.state_root(spec)))
    assert versions == ["LATEST", "v00000008"]  # older versions dropped
    again = TrainingState(spec, store, interval=3600)
    with again:  # a retry on another node
        assert again.resumed_from == 8
        assert (again.path / "state" / "model.bin").read_bytes() == b"w8"
        assert json.loads((again.path / "progress.json").read_text())["step"] == 8


def test_a_finished_part_of_a_trial_is_uploaded_on_exit(s3_endpoint, tiny):
    """An earlier stage or a null model ends long before its trial: its last save is uploaded
    when it ends, so a retry on another node starts after it instead of retraining it."""
    from sweep.trial import part_of, parts_of

    exp = tiny.model_copy(update={"storage": f"{s3_endpoint}/parts"})
    store = ResultsStore(exp.storage, exp.name)
    spec = build_plan(exp)[1]
    null = part_of(spec, "null")
    assert null.key == f"{spec.key}-null"
    # stages and null models are trials of their own: only restarts remain parts of a trial
    assert all("-main-restart-" in p.key for p in parts_of(spec, exp))
    with TrainingState(null, store, interval=3600, final_push=True) as state:  # no thread tick
        save(state.path, step=5, weights=b"w5")
    with TrainingState(null, store, interval=3600) as again:
        assert again.resumed_from == 5
    with TrainingState(part_of(spec, "other"), store, interval=3600) as unpushed:
        save(unpushed.path, step=3, weights=b"w3")  # final_push off: only the ticks upload
    with TrainingState(part_of(spec, "other"), store, interval=3600) as fresh:
        assert fresh.resumed_from == 0


class FakeAccelerator:
    """Writes `files` files holding `tag` where Accelerate writes its state files."""

    def __init__(self, tag: bytes, files: int = 1) -> None:
        self.tag, self.files = tag, files

    def save_state(self, folder: str) -> None:
        Path(folder).mkdir(parents=True)
        for name in ["model.bin", *(f"part{i}.bin" for i in range(1, self.files))]:
            (Path(folder) / name).write_bytes(self.tag)


def save(folder: Path, step: int, weights: bytes, files: int = 1) -> None:
    """The loop's own save (trainers/loop.py) with a stand-in for Accelerate."""
    from trainers.loop import _Progress

    _Progress(step=step).save(FakeAccelerator(weights, files), folder)
    time.sleep(0.01)  # coarse file clocks: the next save's files are strictly newer


class RecordingStore:
    """Keeps every uploaded snapshot's files in memory: what a resume would read."""

    is_local = False

    def __init__(self) -> None:
        self.uploads: list[tuple[int, dict[str, bytes]]] = []

    def push_state(self, spec: object, snapshot: Path, step: int) -> None:
        files = snapshot.rglob("*")
        self.uploads.append(
            (step, {str(f.relative_to(snapshot)): f.read_bytes() for f in files if f.is_file()})
        )


def test_an_upload_at_any_point_of_a_save_holds_one_whole_save(tmp_path, monkeypatch):
    """The mirror thread may copy at any moment of the loop's save. Try every moment: before
    each file deletion and rename the save makes, push; every upload must hold all of one save's
    files under that save's step (a partial or mixed copy breaks resume), and nothing may raise."""
    store, spec = RecordingStore(), type("Spec", (), {"key": "k"})()
    state = TrainingState(spec, store)
    state.path = tmp_path
    busy = False

    def push_first(real):
        def op(*args, **kwargs):
            nonlocal busy
            if not busy:  # the push's own clean-up must not push again
                busy = True
                try:
                    state.pushed = None  # as if no earlier moment's upload had happened
                    state.push_if_new()
                finally:
                    busy = False
            return real(*args, **kwargs)

        return op

    save(tmp_path, 1, b"w1", files=3)
    for name in ("unlink", "rmdir", "rename", "replace"):
        monkeypatch.setattr(os, name, push_first(getattr(os, name)))
    for step in range(2, 5):
        save(tmp_path, step, f"w{step}".encode(), files=3)
    assert {step for step, _ in store.uploads} >= {1, 2, 3}  # the moments were tried
    for step, files in store.uploads:
        assert json.loads(files["progress.json"])["step"] == step
        assert files["state/progress.json"] == files["progress.json"]
        weights = {k: v for k, v in files.items() if k.endswith(".bin")}
        assert sorted(weights) == [f"state/{n}.bin" for n in ("model", "part1", "part2")], step
        assert set(weights.values()) == {f"w{step}".encode()}, step


def list_dir(store: ResultsStore, path: str) -> list[str]:
    import pyarrow.fs as pafs

    return [i.path for i in store.fs.get_file_info(pafs.FileSelector(path))]


# ---- itx status ------------------------------------------------------------------------------
def test_status_counts_nodes_eta_and_failures_from_the_store(tiny, tmp_path):
    store = ResultsStore(tiny.storage, tiny.name)
    plan = build_plan(tiny)
    write_manifest(tiny, store, plan)
    tasks = store.read_json("manifest.json")["tasks"]
    assert tasks["pos"]["category"] == "structured_prediction"  # what the report groups by
    assert tasks["topic_easy"]["role"] == "intermediate" and tasks["nli"]["role"] == "target"
    by_label = {t.label: t for t in plan}
    pretrain, easy, hard = (
        by_label["pretrain"],
        by_label["intermediate/topic_easy/seed=0"],
        by_label["intermediate/topic_hard/seed=0"],
    )
    store.mark_done(pretrain)
    store.write_record(
        pretrain.key, {"state": "done", "seconds": 10.0, "host": "n1", "node_id": "aaaa1111bb"}
    )
    store.write_record(
        easy.key,
        {
            "state": "failed",
            "host": "n2",
            "node_id": "cccc2222dd",
            "errors": ["OSError: disk full", "RuntimeError: loss is nan"],
        },
    )
    started = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=3)).isoformat(timespec="seconds")
    store.write_record(
        hard.key, {"state": "running", "host": "n2", "node_id": "cccc2222dd", "started": started}
    )
    children = [t for t in plan if t.parent == easy.key]
    store.write_json(
        "status.json",
        {
            "errored": {easy.key: "RuntimeError: loss is nan"},
            "skipped": {t.key: f"parent {easy.key} errored" for t in children},
        },
    )
    view = describe_run(store)
    assert view.stages["pretrain"] == {
        "planned": 1,
        "done": 1,
        "running": 0,
        "pending": 0,
        "failed": 0,
        "skipped": 0,
    }
    assert view.stages["intermediate"] == {
        "planned": 2,
        "done": 0,
        "running": 1,
        "pending": 0,
        "failed": 1,
        "skipped": 0,
    }
    assert view.stages["target"]["skipped"] == 2 and view.stages["target"]["pending"] == 6
    assert view.per_node == {"n1/aaaa1111": 1, "n2/cccc2222": 2}
    assert view.failures == {easy.label: "RuntimeError: loss is nan"}
    assert set(view.skipped) == {t.label for t in children}
    # 6 targets and 2 null models pending at 10 s, the running one's 10 - 3 s, over 2 slots
    assert 41.0 <= view.eta_seconds <= 43.5  # ~3-6 s spent, depending on this machine's load
    assert run_status(store)["intermediate"] == {
        "planned": 2,
        "done": 0,
        "errored": 1,
        "skipped": 0,
        "pending": 1,
    }

    result = CliRunner().invoke(app, ["status", store.run])
    assert result.exit_code == 0, result.output
    assert "failed intermediate/topic_easy/seed=0: RuntimeError: loss is nan" in result.output
    assert re.search(r"ETA: 0\.7 min", result.output) and "n2/cccc2222: 2" in result.output


def test_every_result_file_has_one_schema_so_pandas_reads_the_folder(tmp_path):
    """An intermediate's rows have no target task (all null): written with the store schema
    they still read with a target's rows as one dataset, in either file order."""
    import pandas as pd

    from sweep.plan import TrialSpec
    from sweep.schema import ROWS
    from tests.conftest import result_row

    store = ResultsStore(str(tmp_path), "run")
    for key, kind, task, split in (
        ("a", "intermediate", None, "dev"),
        ("b", "target", "nli", "test"),
    ):
        spec = TrialSpec(key=key, kind=kind, intermediate="topic_easy", seed=0, parent="p")
        row = result_row(kind=kind, target_task=task, split=split, trial_key=key, value=0.25)
        store.write_rows(spec, pd.DataFrame([row]))
    rows = pd.read_parquet(tmp_path / "run" / "results")
    assert rows["trial_key"].tolist() == ["a", "b"]
    assert rows["target_task"].isna().tolist() == [True, False]
    assert list(rows.columns) == ROWS.names

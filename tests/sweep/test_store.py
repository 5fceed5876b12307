"""The store on a local S3 server (moto) and on folders: writability checked before anything runs,
versioned training state, trial records, and `itx status` read from the store alone."""

import datetime as dt
import hashlib
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
from sweep.runner import run_sweep, write_manifest
from sweep.status import _eta, describe_run, duration
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
    data = store.read_bytes(f"{store.artifact(spec)}/rows.parquet")
    done = store.read_bytes(f"{store.artifact(spec)}/DONE")  # written last, lists the rest
    sha = hashlib.sha256(data).hexdigest()
    assert json.loads(done) == {
        "format": 1,
        "files": {"rows.parquet": {"bytes": len(data), "sha256": sha}},
    }
    assert store.size("artifacts") == len(data) + len(done)


def test_training_state_is_versioned_and_latest_always_complete(s3_endpoint, tiny, tmp_path):
    exp = tiny.model_copy(update={"storage": f"{s3_endpoint}/state"})
    store = ResultsStore(exp.storage, exp.name)
    spec = build_plan(exp)[1]
    base = store.state_root(spec)

    def names() -> list[str]:
        return sorted(p.rsplit("/", 1)[-1] for p in list_dir(store, base))

    with TrainingState(spec, store, every=0) as state:  # no cadence: every save is uploaded
        up = state.uploader
        assert state.resumed_from == 0 and state.path.is_dir() and up is not None
        save(state.path, step=4, weights=b"w4", best=b"b4")
        state.on_save(state.path)
        wait_for_uploads(up, 1)
        assert names() == ["LATEST", "best-00000004.safetensors", "v00000004"]
        save(state.path, step=8, weights=b"w8")  # best weights unchanged: not uploaded again
        state.on_save(state.path)
        wait_for_uploads(up, 2)
        assert names() == ["LATEST", "best-00000004.safetensors", "v00000008"]
        assert store.read_bytes(f"{base}/v00000008/BEST") == b"best-00000004.safetensors"
        assert up.stats.best_uploads == 1
        save(state.path, step=12, weights=b"w12", best=b"b12")  # new best: up, old one gone
        state.on_save(state.path)
        wait_for_uploads(up, 3)
        assert names() == ["LATEST", "best-00000012.safetensors", "v00000012"]
        assert up.stats.best_uploads == 2 and up.stats.skipped == 0
        # bytes uploaded: each version's weights and its two progress.json, best weights twice
        progress = len((state.path / "progress.json").read_bytes())  # of step 12; 4, 8: 1 less
        assert up.stats.bytes_uploaded == (2 + 2 + 3) + 2 * (3 * progress - 2) + (2 + 3)
    assert not state.path.exists()  # the node-local copy is gone; the store has the state
    again = TrainingState(spec, store, every=0)
    with again:  # a retry on another node
        assert again.resumed_from == 12
        assert (again.path / "state" / "model.bin").read_bytes() == b"w12"
        assert (again.path / "best.safetensors").read_bytes() == b"b12"
        assert json.loads((again.path / "progress.json").read_text())["step"] == 12
        save(again.path, step=16, weights=b"w16")  # resumed best unchanged: not uploaded again
        again.on_save(again.path)
        wait_for_uploads(again.uploader, 1)
        assert again.uploader.stats.best_uploads == 0
    assert names() == ["LATEST", "best-00000012.safetensors", "v00000016"]


def wait_for_uploads(uploader, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while uploader.stats.uploads + uploader.stats.failed < n:
        assert time.monotonic() < deadline, f"{uploader.stats} after {timeout} s"
        time.sleep(0.01)
    assert uploader.stats.failed == 0, uploader.stats


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
    hour = 3600  # the cadence: only the first save goes up while the block runs
    with TrainingState(null, store, every=hour, final_push=True) as state:
        for step in (5, 10):
            save(state.path, step=step, weights=f"w{step}".encode())
            state.on_save(state.path)
        wait_for_uploads(state.uploader, 1)
    assert state.uploader.stats.uploads == 2  # step 10, pending at exit, was pushed then
    with TrainingState(null, store, every=hour) as again:
        assert again.resumed_from == 10
    with TrainingState(part_of(spec, "other"), store, every=hour) as unpushed:
        save(unpushed.path, step=3, weights=b"w3")
        unpushed.on_save(unpushed.path)
        wait_for_uploads(unpushed.uploader, 1)
        save(unpushed.path, step=6, weights=b"w6")  # waits for the cadence, then exit drops it
        unpushed.on_save(unpushed.path)
    assert unpushed.uploader.stats.dropped == 1
    with TrainingState(part_of(spec, "other"), store, every=hour) as fresh:
        assert fresh.resumed_from == 3


class FakeAccelerator:
    """Writes `files` files holding `tag` where Accelerate writes its state files."""

    def __init__(self, tag: bytes, files: int = 1) -> None:
        self.tag, self.files = tag, files

    def save_state(self, folder: str) -> None:
        Path(folder).mkdir(parents=True)
        for name in ["model.bin", *(f"part{i}.bin" for i in range(1, self.files))]:
            (Path(folder) / name).write_bytes(self.tag)


def save(
    folder: Path, step: int, weights: bytes, files: int = 1, best: bytes | None = None
) -> None:
    """The loop's own save (trainers/loop.py) with a stand-in for Accelerate; `best`: new best
    weights first, replaced the way the loop replaces them (`_save_best`)."""
    from trainers.loop import _Progress

    folder.mkdir(parents=True, exist_ok=True)
    if best is not None:
        (folder / "best.tmp").write_bytes(best)
        (folder / "best.tmp").replace(folder / "best.safetensors")
    best_epoch = 0 if (folder / "best.safetensors").exists() else -1
    _Progress(step=step, best_epoch=best_epoch).save(FakeAccelerator(weights, files), folder)


class RecordingStore:
    """Keeps every uploaded snapshot's files in memory: what a resume would read."""

    is_local = False

    def __init__(self) -> None:
        self.uploads: list[tuple[int, dict[str, bytes]]] = []

    def push_state(self, spec: object, snapshot: Path, step: int, best: str | None) -> str:
        files = snapshot.rglob("*")
        self.uploads.append(
            (step, {str(f.relative_to(snapshot)): f.read_bytes() for f in files if f.is_file()})
        )
        return best or f"best-{step}"


def test_an_upload_at_any_point_of_a_save_holds_one_whole_save(tmp_path, monkeypatch):
    """The upload of a save runs while the loop makes its next saves. Try every moment: before
    each file deletion and rename of the next save, read the pending snapshot as an upload
    would; every read must hold all of one save's files under that save's step (a partial or
    mixed copy breaks resume). Hard links make this so: the loop never writes a file twice."""
    from sweep.uploader import StateUploader

    store, spec = RecordingStore(), type("Spec", (), {"key": "k"})()
    work = tmp_path / "work"
    uploader = StateUploader(spec, store, work, tmp_path / "snaps", every=0)  # no thread
    busy, saving = False, False

    def upload_first(real):
        def op(*args, **kwargs):
            nonlocal busy
            pending = uploader.pending
            if saving and not busy and pending is not None:
                busy = True
                try:
                    store.push_state(spec, pending[1], pending[0], None)  # a peek, as uploaded
                finally:
                    busy = False
            return real(*args, **kwargs)

        return op

    save(work, 1, b"w1", files=3, best=b"b1")
    uploader.on_save(work)
    for name in ("unlink", "rmdir", "rename", "replace"):
        monkeypatch.setattr(os, name, upload_first(getattr(os, name)))
    for step in range(2, 6):
        saving = True
        save(
            work, step, f"w{step}".encode(), files=3, best=f"b{step}".encode() if step % 2 else None
        )
        saving = False
        uploader.on_save(work)  # the hook: the loop's save is whole
        if step == 3:
            assert uploader.upload_pending()  # a real upload now and then
    monkeypatch.undo()
    assert {step for step, _ in store.uploads} == {1, 2, 3, 4}  # every moment was tried
    assert len(store.uploads) > 4 * 4  # several moments per save
    for step, files in store.uploads:
        assert json.loads(files["progress.json"])["step"] == step
        assert files["state/progress.json"] == files["progress.json"]
        weights = {k: v for k, v in files.items() if k.endswith(".bin")}
        assert sorted(weights) == [f"state/{n}.bin" for n in ("model", "part1", "part2")], step
        assert set(weights.values()) == {f"w{step}".encode()}, step
        best = step if step % 2 else step - 1  # the newest best weights at that save
        assert files.get("best.safetensors", f"b{best}".encode()) == f"b{best}".encode(), step
    assert uploader.stats.saves == 5 and uploader.stats.uploads == 1
    assert uploader.stats.skipped == 3  # steps 1, 2 and 4 replaced; 5 still pending


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
        hard.key,
        {
            "state": "running",
            "host": "n2",
            "node_id": "cccc2222dd",
            "started": started,
            "progress": "epoch 2/5 (null model)",  # what the trainable notes after each epoch
        },
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
    # only the pretraining (10 s) has finished: its duration says nothing about the others
    assert view.eta_seconds is None
    assert view.eta_unknown == "no intermediate/null/target trial of this run has finished yet"
    assert view.elapsed_seconds is not None and 0 <= view.elapsed_seconds < 60  # manifest: now
    (detail,) = view.running.values()
    assert list(view.running) == [hard.label] and re.fullmatch(
        r"epoch 2/5 \(null model\), \d+ s", detail
    )

    result = CliRunner().invoke(app, ["status", store.run])
    assert result.exit_code == 0, result.output
    assert "failed intermediate/topic_easy/seed=0: RuntimeError: loss is nan" in result.output
    assert (
        "ETA: unknown (no intermediate/null/target trial of this run has finished yet)"
        in " ".join(result.output.split())
    )
    assert re.search(r"elapsed: \d+ s;", result.output) and "n2/cccc2222: 2" in result.output
    assert f"running {hard.label}: epoch 2/5 (null model), " in result.output


def test_eta_is_median_work_left_over_concurrency_and_never_a_false_zero():
    durations = {"intermediate": [10.0], "target": [4.0, 6.0, 20.0]}  # target median 6 s
    left = [("intermediate", 3.0)] + [("target", 0.0)] * 6
    # by hand: (10 - 3) + 6 x 6 = 43 s of work over 2 concurrent trials
    assert _eta(durations, left, 2) == (21.5, "")
    assert _eta(durations, [], 2) == (0.0, "")  # nothing left: zero is true
    seconds, why = _eta(durations, [("target", 7.0)], 2)  # past the 6 s median: no guess
    assert (
        seconds is None and why == "a running target trial has run longer than the stage's median"
    )
    assert duration(0.4) == "0 s" and duration(130) == "2m10s" and duration(3900) == "1h05m"


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

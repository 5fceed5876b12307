"""Artifacts on an object store: DONE only after everything else, a kill during an upload leaves
the artifact unfinished, and no node-local temporary folder outlives a trial, a kill or a retry.

The store here is a local folder behind a pyarrow `PyFileSystem`, so the code takes its
object-store path (node-local copies, the state uploader) without a server; `KillingFS` SIGKILLs
its own process halfway through writing a chosen artifact file.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from sweep.config import load_config
from sweep.localfs import LocalHandler, WrappedStream
from sweep.plan import build_plan
from sweep.store import ResultsStore
from sweep.trial import execute

ROOT = Path(__file__).resolve().parents[2]


class _DyingStream(WrappedStream):
    """An output stream that writes half of its first chunk, then kills the process."""

    def write(self, data: bytes) -> int:
        self.inner.write(data[: max(1, len(data) // 2)])
        self.inner.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        return len(data)


class KillingFS(LocalHandler):
    """The local filesystem, except that writing a file whose path matches the regular
    expression `victim` kills the process halfway through."""

    def __init__(self, victim: str | None) -> None:
        super().__init__()
        self.victim = victim

    def wrap_output(self, path: str, stream: pa.NativeFile) -> pa.NativeFile:
        if self.victim and re.search(self.victim, path):
            return pa.PythonFile(_DyingStream(stream), mode="w")
        return stream


def remote_store(storage: str, victim: str | None = None) -> ResultsStore:
    store = ResultsStore(storage, "tiny")
    store.fs = pafs.PyFileSystem(KillingFS(victim))
    return store


def tiny(storage: Path):
    return load_config(ROOT / "tests" / "fixtures" / "tiny.yaml", {"storage": str(storage)})


def run_trial(storage: str, label: str, victim: str | None) -> None:
    """Child process: execute one trial of the tiny plan on the killing store."""
    exp = tiny(Path(storage))
    spec = next(t for t in build_plan(exp) if t.label == label)
    execute(spec, exp, remote_store(storage, victim))


def child(storage: Path, label: str, victim: str | None, tmp: Path) -> int:
    call = f"run_trial({str(storage)!r}, {label!r}, {victim!r})"
    code = f"from tests.sweep.test_artifacts import run_trial; {call}"
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    env.pop("ITX_NODE_DIR", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, timeout=300)
    return done.returncode


def leftovers(tmp: Path) -> list[str]:
    """Our folders under a private TMPDIR (top-level names starting with itx; torch keeps its
    own compile cache there), except the node cache and the empty tmp/: top two levels."""
    found = []
    for top in sorted(tmp.glob("itx*")):
        if top.name != "itx-node":
            found.append(top.name)
            continue
        for path in sorted(top.iterdir()):
            if path.name == "tmp":
                found += [f"itx-node/tmp/{p.name}" for p in sorted(path.iterdir())]
            elif path.name != "cache":
                found.append(f"itx-node/{path.name}")
    return found


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.delenv("ITX_NODE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    yield tmp
    tempfile.tempdir = None


# (trial, the write killed halfway, the partial file it leaves): the three artifact kinds
WEIGHTS = r"/artifacts/(pretrain|intermediate)/\w+/model\.safetensors$"
KILLS = [
    ("pretrain", WEIGHTS, "model.safetensors"),
    pytest.param(
        "intermediate/topic_easy/seed=0", WEIGHTS, "model.safetensors", marks=pytest.mark.slow
    ),
    pytest.param(  # the rows, written to a temp name and renamed
        "target/topic_easy/nli/seed=0",
        r"/artifacts/target/\w+/\.tmp-",
        ".tmp-*",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize(
    ("label", "victim", "partial"), KILLS, ids=["pretrain", "intermediate", "target"]
)
def test_a_kill_during_an_upload_leaves_the_artifact_unfinished(
    tmp_path, private_tmp, label, victim, partial
):
    storage = tmp_path / "store"
    exp = tiny(storage)
    plan = {t.label: t for t in build_plan(exp)}
    spec = plan[label]
    store = remote_store(str(storage))
    for parent in ("pretrain", "intermediate/topic_easy/seed=0"):  # the chain above it
        if parent == label:
            break
        execute(plan[parent], exp, store)

    assert child(storage, label, victim, private_tmp) == -signal.SIGKILL
    artifact = Path(store.artifact(spec))
    assert len(list(artifact.glob(partial))) == 1  # killed halfway through this file...
    assert not store.is_done(spec) and not (artifact / "DONE").exists()  # ...and not done
    if partial == "model.safetensors":
        # other files went up in parallel threads; a local DONE (pretrain) was never copied
        assert (artifact / "config.json").exists()
    left = [re.sub(r"-[0-9a-f]{12}", "-*", name) for name in leftovers(private_tmp)]
    if spec.kind == "intermediate":  # killed inside the folder the new encoder was written to
        assert left == ["itx-node/tmp/encoder-*", "itx-node/tmp/encoder-*.lock"]
    else:  # pretrain uploads from the machine cache; a target's state folder was closed
        assert left == []

    rows = execute(spec, exp, store)  # the retry: same node, same store
    assert store.is_done(spec) and (spec.kind == "pretrain" or not rows.empty)
    listed = json.loads((artifact / "DONE").read_text())["files"]
    on_disk = {
        p.relative_to(artifact).as_posix(): p.stat().st_size
        for p in artifact.rglob("*")
        if p.is_file() and p.name != "DONE" and not p.name.startswith(".tmp-")
    }
    assert {rel: meta["bytes"] for rel, meta in listed.items()} == on_disk
    assert all(meta["sha256"] for meta in listed.values())  # uploaded by this process
    if spec.kind != "pretrain":  # both tables of the trial, each hashed (sweep.schema)
        assert {"rows.parquet", "fits.parquet"} <= set(listed)
    assert leftovers(private_tmp) == []  # the retry swept the dead process's folders


def test_a_sweep_of_trials_leaves_only_the_bounded_cache(tmp_path, private_tmp):
    """pretrain, an intermediate and its two targets on the object-store path: the node keeps
    two cache entries (the root and the parent encoder, each downloaded once), nothing else."""
    storage = tmp_path / "store"
    exp = tiny(storage)
    store = remote_store(str(storage))
    wanted = ("pretrain", "intermediate/topic_easy/seed=0", "target/none/nli/seed=0")
    wanted += ("target/topic_easy/nli/seed=0", "target/topic_easy/pos/seed=0")
    for spec in build_plan(exp):
        if spec.label in wanted:
            info: dict = {}
            execute(spec, exp, store, info=info)
            if spec.kind != "pretrain":  # every save uploaded or counted (the trial's record)
                up = info["state_uploads"]
                assert up["saves"] == up["uploads"] + up["skipped"] + up["dropped"] >= 2, up
                assert up["uploads"] >= 1 and up["failed"] == 0, up
    assert leftovers(private_tmp) == []
    entries = [p for p in (private_tmp / "itx-node" / "cache").iterdir() if p.is_dir()]
    assert len(entries) == 2
    for entry in entries:
        assert (entry / "model.safetensors").stat().st_size > 0
    assert store.size("scratch") == 0

"""Driver crash: SIGKILL `itx run` mid-sweep, rerun it, and no finished trial trains again; the
storage stays bounded while it runs and holds only what retention keeps afterwards."""

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from sweep.config import load_config
from sweep.plan import build_plan
from sweep.runner import run_sweep
from sweep.store import ResultsStore
from tests.sweep.test_artifacts import leftovers
from trainers.loop import saved_step

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)


def write_config(root: Path, folder: Path) -> Path:
    raw = yaml.safe_load((root / "tests" / "fixtures" / "tiny.yaml").read_text())
    raw.update(
        name="faults",
        storage=str(folder / "store"),
        intermediates=["topic_easy", "topic_hard"],
        targets=["nli"],
        languages=["en"],
        controls={"scratch": False},
        data={"train": 512, "dev": 32, "test": 32},
        train={"epochs": 1, "batch_size": 16, "checkpoint_every": 4},
        resources={"cpu": 1, "pretrain_cpu": 1, "max_concurrent_trials": 2, "num_cpus": 1},
    )
    path = folder / "faults.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def kill_session(sid: int) -> None:
    """SIGKILL every process of the session we started (the driver and its local Ray)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        pid, session = map(int, line.split())
        if session == sid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue


class PeakSize:
    """Samples the storage size in a thread; `peak` is the largest seen."""

    def __init__(self, store: ResultsStore) -> None:
        self.store, self.peak, self._stop = store, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, self.store.size())
            except OSError:  # a file vanished while listed
                continue

    def __enter__(self) -> "PeakSize":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_driver_killed_mid_sweep_then_rerun_retrains_nothing_finished(root, tmp_path, monkeypatch):
    private_tmp = tmp_path / "t"  # every process of both runs: the driver, Ray's workers
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/ray")  # Ray's default: its socket paths stay short
    monkeypatch.setattr(tempfile, "tempdir", None)
    config = write_config(root, tmp_path)
    exp = load_config(config)
    store = ResultsStore(exp.storage, exp.name)
    plan = build_plan(exp)
    scratch = Path(store.root) / "scratch"
    itx = Path(sys.executable).with_name("itx")
    driver = subprocess.Popen(
        [str(itx), "run", str(config)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "driver.log").open("w"),
        start_new_session=True,  # its own session: we kill exactly what we started
    )
    try:
        with PeakSize(store) as first_size:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and driver.poll() is None:
                done = {t.key for t in plan if store.is_done(t)}
                running = [
                    k
                    for k, r in store.read_records().items()
                    if r["state"] == "running" and k not in done
                ]
                saving = [k for k in running if (scratch / k / "progress.json").exists()]
                if len(done) >= 2 and saving:  # kill a trial that has saved some state
                    break
                time.sleep(0.05)
            assert driver.poll() is None, "the sweep ended before it could be killed"
            kill_session(driver.pid)
            driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            kill_session(driver.pid)
    done_before = {t.key: Path(store.artifact(t)) / "DONE" for t in plan if store.is_done(t)}
    stamps = {key: path.stat().st_mtime_ns for key, path in done_before.items()}
    # killed trials' last saved step, read as the resume reads it (from inside state/: a kill
    # after the state swap but before the top-level progress.json resumes the newer save)
    saved = {key: saved_step(scratch / key) for key in running}
    assert 2 <= len(done_before) < len(plan) and max(saved.values()) >= 4

    with PeakSize(store) as second_size:
        again = run_sweep(exp, verbose=0)

    assert again.errored == {} and again.skipped == {}
    assert set(again.issued).isdisjoint(done_before)  # zero finished trials handed to Tune
    assert set(again.reused) == set(done_before)
    assert {key: path.stat().st_mtime_ns for key, path in done_before.items()} == stamps
    assert all(store.is_done(t) for t in plan)
    records = store.read_records()
    for key, step in saved.items():  # a trial killed with its driver resumes from its last save
        assert records[key]["resumed_from_step"] == step and records[key]["attempt"] == 2

    # retention: encoders of intermediates kept, targets keep rows and fits only, no resume state
    artifacts = Path(store.root) / "artifacts"
    for folder in (artifacts / "intermediate").iterdir():
        assert (folder / "model.safetensors").stat().st_size > 0
    for folder in (artifacts / "target").iterdir():
        assert {p.name for p in folder.iterdir()} == {"DONE", "rows.parquet", "fits.parquet"}
    assert store.size("scratch") == 0
    assert leftovers(private_tmp) == []  # no temporary folder of the killed run or the rerun
    final = store.size()
    peak = max(first_size.peak, second_size.peak)
    encoder = (next((artifacts / "pretrain").iterdir()) / "model.safetensors").stat().st_size
    # at most two trials' state at once (weights, Adam moments, best weights: ~4 encoders each)
    assert final <= peak <= final + 2 * 5 * encoder
    log.warning(
        "storage: peak %.2f MB, final %.2f MB (encoder %.2f MB); killed trials resumed from %s",
        peak / 1e6,
        final / 1e6,
        encoder / 1e6,
        saved,
    )

"""Training-state bytes per save and per trial: the polling mirror against the save-hook uploader.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/state_upload.py

Both designs run in this process against the real save protocol (`trainers.loop._Progress.save`)
and the real store code (`ResultsStore.push_state`) on an object-store path: a local folder behind
a pyarrow filesystem that counts the bytes written to it and throttles them to a fixed bandwidth.
The peer, `PollingMirror`, is the mirror this replaced (sweep/trial.py `TrainingState` up to
commit 227ec59), kept here byte for byte in what it copies and uploads.

1. A trial: an MNLI intermediate with XLM-R base (392,702 examples, batch 32, 3 epochs of
   12,272 steps, a save every 500 steps and at each epoch end: 24 + 1 saves per epoch, 75 in
   all; best weights improve at the first two epoch ends). Every size and duration is scaled
   by 1/SCALE: one save of XLM-R base (weights W = 278,043,648 x 4 bytes, optimizer state
   2.12 W as measured in issue 18, best weights W) becomes W/SCALE bytes, and the assumed 85 s
   between saves (about 6 steps/s on one A10G), the mirror's 0.5 s poll and the uploader's
   300 s cadence become 1/SCALE of that; the bandwidth to the object store (200 MB/s) is
   unchanged, so an upload takes 1/SCALE of its real time too. Figures are printed scaled
   back up (x SCALE).
   A third row, `every-save`, is the uploader without a cadence: what uploading best weights only
   when they change saves on its own.
2. A stress test, unscaled: saves every 0.1 s, each slower to upload than the time to the next
   save; the mirror's copies are caught by the next save and thrown away, the uploader's
   snapshots are not (it prints the mirror's median copy time: the failure regime is a copy
   slower than the interval between saves).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from sweep.localfs import LocalHandler, WrappedStream
from sweep.store import ResultsStore
from sweep.uploader import StateUploader
from trainers.loop import _Progress

SCALE = 400
W = 278_043_648 * 4  # XLM-R base weights, float32
OPTIMIZER_RATIO = 2.12  # Adam moments + step, over the weights (issue 18, measured)
SAVE_EVERY_S, BANDWIDTH, CADENCE_S, POLL_S = 85.0, 200e6, 300.0, 0.5
SAVES_PER_EPOCH, EPOCHS = (24, 1), 3  # 12,272 steps per epoch: 24 saves + the epoch end's


class Throttled(WrappedStream):
    """Output stream: counts bytes into `meter` and spends len/bandwidth seconds per write,
    one writer at a time (the node's bandwidth is shared by parallel uploads)."""

    def __init__(self, inner: pa.NativeFile, meter: Meter) -> None:
        super().__init__(inner)
        self.meter = meter

    def write(self, data: bytes) -> int:
        with self.meter.lock:
            self.inner.write(data)
            self.meter.bytes += len(data)
            time.sleep(len(data) / self.meter.bandwidth)
        return len(data)


class Meter:
    def __init__(self, bandwidth: float) -> None:
        self.bytes, self.bandwidth, self.lock = 0, bandwidth, threading.Lock()


class CountingFS(LocalHandler):
    """A local folder seen as an object store: writes counted and throttled."""

    def __init__(self, meter: Meter) -> None:
        super().__init__()
        self.meter = meter

    def wrap_output(self, path: str, stream: pa.NativeFile) -> pa.NativeFile:
        return pa.PythonFile(Throttled(stream, self.meter), mode="w")


class FakeAccelerator:
    """Writes Accelerate's state files at the given sizes (zeros: content is not measured)."""

    def __init__(self, weights: int) -> None:
        self.weights = weights

    def save_state(self, folder: str) -> None:
        out = Path(folder)
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(bytes(self.weights))
        (out / "optimizer.bin").write_bytes(bytes(int(OPTIMIZER_RATIO * self.weights)))
        (out / "scheduler.bin").write_bytes(bytes(1_000))
        (out / "random_states_0.pkl").write_bytes(bytes(16_000))


class PollingMirror:
    """The replaced design: a thread copies the state folder every `interval` s and uploads the
    copy only if no save touched the folder meanwhile (best weights inside every version)."""

    def __init__(self, store: ResultsStore, work: Path, interval: float) -> None:
        self.store, self.work, self.interval = store, work, interval
        self.spec = type("Spec", (), {"key": "mirror"})()
        self.pushed: bytes | None = None
        self.copied_bytes = self.uploads = self.discarded = 0
        self.copy_seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.push_if_new()

    def push_if_new(self) -> None:
        progress, state = self.work / "progress.json", self.work / "state"
        snapshot = Path(tempfile.mkdtemp(prefix="itx-bench-snap-"))
        try:
            before = (progress.stat().st_mtime_ns, progress.read_bytes(), state.stat().st_ino)
            if before[1] == self.pushed:
                return
            started = time.monotonic()
            shutil.copytree(state, snapshot / "state")
            best = self.work / "best.safetensors"
            if best.exists():
                shutil.copy2(best, snapshot / "best.safetensors")
            self.copy_seconds.append(time.monotonic() - started)
            self.copied_bytes += _bytes(snapshot)
            after = (progress.stat().st_mtime_ns, progress.read_bytes(), state.stat().st_ino)
            inner = snapshot / "state" / "progress.json"
            newest = max(f.stat().st_mtime_ns for f in snapshot.rglob("*") if f.is_file())
            if inner.read_bytes() != before[1] or before != after or newest > before[0]:
                self.discarded += 1  # caught between two writes of one save
                return
            (snapshot / "progress.json").write_bytes(before[1])
            self.store.push_state(self.spec, snapshot, json.loads(before[1])["step"], None)
            self.pushed = before[1]
            self.uploads += 1
        except FileNotFoundError:
            self.discarded += 1  # a save replaced a folder while it copied
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def copied_bytes(snapshot: Path, work: Path) -> int:
    """Bytes of a snapshot's files that are copies, not hard links of the loop's own files."""
    own = {f.stat().st_ino for f in work.rglob("*") if f.is_file()}
    copied = 0
    for f in snapshot.rglob("*"):
        try:  # the uploader may take and delete the snapshot while it is measured
            info = f.stat()
        except FileNotFoundError:
            continue
        if f.is_file() and info.st_ino not in own:
            copied += info.st_size
    return copied


def run_trial(
    design: str, root: Path, weights: int, save_every: float, schedule: list[bool], bandwidth: float
) -> dict:
    """Saves on a clock; `schedule[i]`: whether save i is an epoch end whose best improves."""
    meter = Meter(bandwidth)
    store = ResultsStore(str(root / design / "store"), "bench")
    store.fs = pafs.PyFileSystem(CountingFS(meter))
    work = root / design / "work"
    work.mkdir(parents=True)
    spec = type("Spec", (), {"key": design})()
    local_extra = 0  # bytes a design writes to the node's disk beyond the loop's own saves
    if design == "mirror":
        agent = PollingMirror(store, work, POLL_S / SCALE)
    else:  # "uploader" on its cadence; "every-save": no cadence (what best-once alone saves)
        snaps = root / design / "snaps"
        every = CADENCE_S / SCALE if design == "uploader" else 0.0
        agent = StateUploader(spec, store, work, snaps, every=every)
    agent.start()
    saved_bytes = 0
    for i, best_improves in enumerate(schedule):
        started = time.monotonic()
        if best_improves:
            (work / "best.tmp").write_bytes(bytes(weights))
            (work / "best.tmp").replace(work / "best.safetensors")
        _Progress(step=(i + 1) * 500, best_epoch=0).save(FakeAccelerator(weights), work)
        saved_bytes += _bytes(work / "state") + (weights if best_improves else 0)
        if design != "mirror":
            agent.on_save(work)
            pending = agent.pending  # the snapshot just taken, unless already being uploaded
            local_extra += copied_bytes(pending[1], work) if pending else 0
        time.sleep(max(0.0, save_every - (time.monotonic() - started)))
    if design == "mirror":
        agent.close()
        local_extra = agent.copied_bytes
        out = {"uploads": agent.uploads, "logged": 0, "discarded": agent.discarded}
        out["copy_s"] = (
            sorted(agent.copy_seconds)[len(agent.copy_seconds) // 2] if agent.copy_seconds else 0.0
        )
    else:
        stats = agent.close(flush=False)  # a finished trial writes DONE next
        out = {"uploads": stats.uploads, "logged": stats.skipped + stats.dropped, "discarded": 0}
        out["best_uploads"] = stats.best_uploads
    out.update(saves=len(schedule), uploaded=meter.bytes, local=local_extra, saved=saved_bytes)
    return out


def gb(n: float) -> str:
    return f"{n / 1e9:8.2f} GB"


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    weights = W // SCALE
    schedule: list[bool] = []
    for epoch in range(EPOCHS):
        schedule += [False] * SAVES_PER_EPOCH[0] + [epoch < 2]  # best improves in epochs 1, 2
    with tempfile.TemporaryDirectory(prefix="itx-bench-state-") as tmp:
        root = Path(tmp)
        print(
            f"1. MNLI x XLM-R base trial, scaled 1/{SCALE} in bytes and time, figures x{SCALE}: "
            f"{len(schedule)} saves, state {gb((1 + OPTIMIZER_RATIO) * W).strip()} + best "
            f"{gb(W).strip()}, 200 MB/s, saves every {SAVE_EVERY_S:.0f} s, "
            f"cadence {CADENCE_S:.0f} s"
        )
        print(
            f"{'design':10} {'saves':>5} {'uploads':>7} {'logged':>6} "
            f"{'node disk/save':>15} {'node disk/trial':>15} {'uploaded/save':>14} "
            f"{'uploaded/trial':>15}"
        )
        results = {}
        for design in ("mirror", "every-save", "uploader"):
            r = run_trial(design, root, weights, SAVE_EVERY_S / SCALE, schedule, BANDWIDTH)
            results[design] = r
            n = r["saves"]
            print(
                f"{design:10} {n:5d} {r['uploads']:7d} {r['logged']:6d} "
                f"{gb(r['local'] * SCALE / n):>15} {gb(r['local'] * SCALE):>15} "
                f"{gb(r['uploaded'] * SCALE / n):>14} {gb(r['uploaded'] * SCALE):>15}"
            )
        mirror, new = results["mirror"], results["uploader"]
        print(
            f"   the loop's own saves write {gb(mirror['saved'] * SCALE).strip()} in both; "
            f"uploaded: {mirror['uploaded'] / max(new['uploaded'], 1):.1f}x less with the "
            f"uploader (best weights up {new['best_uploads']} times)"
        )

        print(
            "2. stress (unscaled): 60 saves of 31 MB of state + 10 MB of best weights, one every "
            "0.1 s; uploads at 100 MB/s take about 0.4 s"
        )
        stress = [True] + [False] * 59  # best weights present: the mirror copies them too
        how = {"mirror": "copies thrown away, unlogged", "uploader": "logged and counted"}
        for design in ("mirror", "uploader"):
            r = run_trial(design, root / "stress", 10_000_000, 0.1, stress, 100e6)
            copy = f"; median copy {r['copy_s']:.3f} s" if design == "mirror" else ""
            print(
                f"   {design:10} {r['saves']} saves: {r['uploads']} uploads, "
                f"{r['saves'] - r['uploads']} saves not uploaded ({how[design]}: "
                f"{r['logged']} logged, {r['discarded']} copies discarded{copy})"
            )


if __name__ == "__main__":
    main()

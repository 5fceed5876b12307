"""Training state on object stores: the loop hands over each save, one thread uploads them.

The loop (trainers/loop.py) calls `on_save(state_dir)` after each whole save. The hook takes a
snapshot by hard links, which costs no bytes and stays whole: the loop writes each file once and
afterwards only renames or deletes it (`_Progress.save`), so a linked file never changes. One
thread uploads snapshots on a wall-clock cadence (`every` seconds between upload starts), at most
one in flight. A save arriving while an upload runs, or before the cadence allows the next one,
waits as the pending snapshot (an urgent save, asked for at a spot notice, waits only for the
upload in flight); a newer save replaces it and the older one is skipped (logged and
counted). The pending snapshot is always the newest, and it is uploaded as soon as the thread is
free, so uploads never stop while saves keep coming, however slow the store. Best weights go up
only when the loop replaced them (a new file) since the last upload; versions name them in BEST.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sweep.node import temp_dir
from sweep.plan import TrialSpec
from sweep.store import ResultsStore

log = logging.getLogger(__name__)

# Seconds between upload starts. A preemption loses at most this much training plus one
# upload (benchmarks/state_upload.py prints the bytes per save and per trial).
UPLOAD_EVERY_S = 300.0


@dataclass
class UploadStats:
    saves: int = 0  # handed over by the loop
    uploads: int = 0  # versions that reached LATEST
    skipped: int = 0  # replaced by a newer save before their upload began
    failed: int = 0  # uploads that raised (the snapshot is retried unless a newer one came)
    dropped: int = 0  # pending at exit and not uploaded (a finished trial writes DONE next)
    bytes_uploaded: int = 0
    best_uploads: int = 0
    urgent: int = 0  # saves asked for at a spot notice, uploaded without waiting for the cadence
    last_step: int = 0  # step of the newest upload


class StateUploader:
    """Uploads the saves of one state folder (`work`); snapshots live in `snaps` (same disk)."""

    def __init__(
        self, spec: TrialSpec, store: ResultsStore, work: Path, snaps: Path, every: float
    ) -> None:
        self.spec, self.store, self.work, self.snaps, self.every = spec, store, work, snaps, every
        self.stats = UploadStats()
        self.best: str | None = None  # store name of the best weights of the last upload
        self._cv = threading.Condition()
        self._pending: tuple[int, Path] | None = None
        self._next_start = 0.0  # time.monotonic() before which no upload starts
        self._closed = False
        self._seq = 0
        self._thread: threading.Thread | None = None
        snaps.mkdir(parents=True, exist_ok=True)
        # a link to the best weights last uploaded: their inode cannot be reused while it lives
        self._sent_best = snaps / "sent-best.safetensors"

    # ---- the loop's side ---------------------------------------------------------------------
    def adopt_pulled(self) -> None:
        """After `store.pull_state` into `work`: its best weights are on the store already."""
        name = (self.work / "BEST").read_text().strip() if (self.work / "BEST").exists() else ""
        if name and (self.work / "best.safetensors").exists():
            self.best = name
            os.link(self.work / "best.safetensors", self._sent_best)

    def on_save(self, state_dir: Path, urgent: bool = False) -> None:
        """The loop's save hook: snapshot by hard links, hand over; returns at once.

        `urgent` (a save asked for at a spot notice, trainers.preempt): upload it as soon as the
        upload in flight, if any, ends, whatever the cadence.
        """
        step, snap = self._snapshot(state_dir)
        with self._cv:
            self.stats.saves += 1
            if urgent:
                self._next_start = 0.0
                self.stats.urgent += 1
            if self._pending is not None:
                old_step, old = self._pending
                self.stats.skipped += 1
                shutil.rmtree(old, ignore_errors=True)
                log.info(
                    "trial %s: save at step %d not uploaded, step %d is newer (%d of %d saves "
                    "skipped so far)",
                    self.spec.key,
                    old_step,
                    step,
                    self.stats.skipped,
                    self.stats.saves,
                )
            self._pending = (step, snap)
            self._cv.notify_all()

    def _snapshot(self, state_dir: Path) -> tuple[int, Path]:
        self._seq += 1
        snap = self.snaps / f"{self._seq:08d}"
        shutil.copytree(state_dir / "state", snap / "state", copy_function=os.link)
        os.link(state_dir / "progress.json", snap / "progress.json")
        if (state_dir / "best.safetensors").exists():
            os.link(state_dir / "best.safetensors", snap / "best.safetensors")
        return json.loads((snap / "progress.json").read_text())["step"], snap

    @property
    def pending(self) -> tuple[int, Path] | None:
        """(step, snapshot folder) of the save waiting for an upload, if any."""
        with self._cv:
            return self._pending

    # ---- the upload thread -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="itx-upload")
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._ready() and not (self._closed and self._pending is None):
                    wait = self._next_start - time.monotonic() if self._pending else None
                    self._cv.wait(wait)
                if self._pending is None:
                    return
                item, self._pending = self._pending, None
                self._next_start = time.monotonic() + self.every  # an urgent save resets it
            self._upload(item)

    def _ready(self) -> bool:
        return self._pending is not None and (self._closed or time.monotonic() >= self._next_start)

    def upload_pending(self) -> bool:
        """Upload the pending snapshot now, if there is one (the thread's work, by hand)."""
        with self._cv:
            item, self._pending = self._pending, None
            self._next_start = time.monotonic() + self.every
        return item is not None and self._upload(item)

    def _upload(self, item: tuple[int, Path]) -> bool:
        step, snap = item
        best = snap / "best.safetensors"
        if best.exists() and self._sent_best.exists() and _same_file(best, self._sent_best):
            best.unlink()  # unchanged since the last upload: the version names the stored copy
        try:
            fresh = best.exists()
            self.best = self.store.push_state(self.spec, snap, step, self.best)
        except Exception as err:  # a failed upload costs progress only; retry unless superseded
            self.stats.failed += 1
            log.warning("trial %s: state upload of step %d failed: %s", self.spec.key, step, err)
            with self._cv:
                if self._pending is None and not self._closed:
                    if not best.exists() and self._sent_best.exists():
                        os.link(self._sent_best, best)  # as taken
                    self._pending = (step, snap)
                    return False
            shutil.rmtree(snap, ignore_errors=True)
            return False
        sent = _bytes(snap)
        if fresh:
            self._sent_best.unlink(missing_ok=True)
            os.link(best, self._sent_best)
            self.stats.best_uploads += 1
        self.stats.uploads += 1
        self.stats.bytes_uploaded += sent
        self.stats.last_step = step
        shutil.rmtree(snap, ignore_errors=True)
        return True

    def close(self, flush: bool) -> UploadStats:
        """Stop after the upload in flight; with `flush`, upload the pending save first."""
        with self._cv:
            self._closed = True
            if not flush and self._pending is not None:
                self.stats.dropped += 1
                shutil.rmtree(self._pending[1], ignore_errors=True)
                self._pending = None
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
        elif flush:
            self.upload_pending()
        return self.stats


def _same_file(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


class TrainingState:
    """The folder a trial's loop saves its state into, resumable from any node.

    Local or shared-filesystem roots: <root>/scratch/<key> itself, no hook. Object-store roots:
    a node-local folder (sweep.node.temp_dir: gone after exit, or after a kill once the next
    process on the node starts), filled from the store on entry; `on_save` is the loop's hook
    into a `StateUploader`. On exit the pending save is uploaded when `final_push` (parts of a
    trial end long before it) or when the block raised (a retry resumes from it), and the
    upload counts are added into `tally`.
    """

    def __init__(
        self,
        spec: TrialSpec,
        store: ResultsStore,
        every: float = UPLOAD_EVERY_S,
        final_push: bool = False,
        tally: dict[str, int] | None = None,
    ) -> None:
        self.spec, self.store, self.every, self.final_push = spec, store, every, final_push
        self.tally = tally  # UploadStats added into it on exit (the trial's record keeps it)
        self.remote = not store.is_local
        self.path = Path(store.scratch(spec))  # replaced by a node-local folder when remote
        self.resumed_from = 0
        self.uploader: StateUploader | None = None
        self.on_save: Any = None  # Callable[[Path], None] for train_and_evaluate, or None
        self._folders = contextlib.ExitStack()

    def __enter__(self) -> TrainingState:
        if not self.remote:
            self.path.mkdir(parents=True, exist_ok=True)
            from trainers.loop import saved_step  # the loop's own reading of its saves

            self.resumed_from = saved_step(self.path)
            return self
        folder = self._folders.enter_context(temp_dir(f"state-{self.spec.key}-"))
        self.path = folder / "work"
        self.resumed_from = self.store.pull_state(self.spec, self.path)
        self.uploader = StateUploader(
            self.spec, self.store, self.path, folder / "snaps", self.every
        )
        self.uploader.adopt_pulled()
        self.uploader.start()
        self.on_save = self.uploader.on_save
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.uploader is not None:
                stats = self.uploader.close(flush=self.final_push or exc[0] is not None)
                log.info("trial %s: state uploads %s", self.spec.key, asdict(stats))
                if self.tally is not None:
                    for name, value in asdict(stats).items():
                        if name != "last_step":
                            self.tally[name] = self.tally.get(name, 0) + value
        finally:
            self._folders.close()

"""The state uploader under stress: saves faster than uploads, failing uploads, the cadence.

The mirror it replaced threw a copy away whenever a save landed during it: with saves every
0.2 s and a 0.3 s copy it uploaded nothing (issue 18). Here uploads must keep completing while
saves keep coming, every save must be either uploaded or counted as skipped, and every upload
must hold one whole save, the newest at the time it started.
"""

import json
import logging
import threading
import time
from pathlib import Path

from sweep.uploader import StateUploader
from tests.sweep.test_store import save

SPEC = type("Spec", (), {"key": "k"})()


class SlowStore:
    """An object store that takes `seconds` per upload and fails the first `fail` ones."""

    is_local = False

    def __init__(self, seconds: float, fail: int = 0) -> None:
        self.seconds, self.fail = seconds, fail
        self.uploads: list[tuple[int, dict[str, bytes]]] = []
        self.in_flight, self.most_in_flight = 0, 0
        self._lock = threading.Lock()

    def push_state(self, spec: object, snapshot: Path, step: int, best: str | None) -> str:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            files = {
                str(f.relative_to(snapshot)): f.read_bytes()
                for f in snapshot.rglob("*")
                if f.is_file()
            }
            time.sleep(self.seconds)
            if self.fail:
                self.fail -= 1
                raise OSError("connection reset by peer")
            self.uploads.append((step, files))
            return best or f"best-{step:08d}.safetensors"
        finally:
            with self._lock:
                self.in_flight -= 1


def assert_whole(uploads: list[tuple[int, dict[str, bytes]]]) -> None:
    for step, files in uploads:
        assert json.loads(files["progress.json"])["step"] == step
        assert files["state/progress.json"] == files["progress.json"]
        assert files["state/model.bin"] == files["state/part1.bin"] == f"w{step}".encode()


def test_saves_faster_than_uploads_still_upload_and_count_every_skip(tmp_path, caplog):
    store = SlowStore(seconds=0.25)
    work = tmp_path / "work"
    uploader = StateUploader(SPEC, store, work, tmp_path / "snaps", every=0)
    uploader.start()
    caplog.set_level(logging.INFO, logger="sweep.uploader")
    for step in range(1, 61):  # a save every ~0.02 s: about 12 saves per upload
        save(work, step, f"w{step}".encode(), files=2)
        uploader.on_save(work)
        time.sleep(0.02)
    while_saving = uploader.stats.uploads
    stats = uploader.close(flush=True)

    assert while_saving >= 2  # the old mirror: 0 uploads at this ratio
    assert stats.saves == 60 and stats.failed == stats.dropped == 0
    assert stats.uploads + stats.skipped == 60  # each save uploaded or counted, none silently
    assert stats.skipped >= 30 and store.most_in_flight == 1
    steps = [step for step, _ in store.uploads]
    assert steps[0] == 1 and steps[-1] == 60  # the first at once, the last at exit (flush)
    assert steps == sorted(set(steps))  # the newest wins: never an older save after a newer
    assert_whole(store.uploads)
    skips = [r for r in caplog.records if "not uploaded" in r.getMessage()]
    assert len(skips) == stats.skipped
    assert not list((tmp_path / "snaps").glob("0*"))  # every snapshot deleted after use


def test_a_failed_upload_is_retried_unless_a_newer_save_came(tmp_path):
    store = SlowStore(seconds=0.0, fail=2)
    work = tmp_path / "work"
    uploader = StateUploader(SPEC, store, work, tmp_path / "snaps", every=0)  # by hand
    save(work, 1, b"w1", files=2)
    uploader.on_save(work)
    assert not uploader.upload_pending()  # fails: kept as pending
    assert uploader.pending is not None and uploader.pending[0] == 1
    save(work, 2, b"w2", files=2)
    uploader.on_save(work)  # replaces it
    assert not uploader.upload_pending()  # fails again
    assert uploader.upload_pending()  # the retry of step 2 goes up
    assert [s for s, _ in store.uploads] == [2]
    assert_whole(store.uploads)
    assert uploader.stats.failed == 2 and uploader.stats.skipped == 1
    assert uploader.stats.uploads == 1 and uploader.pending is None


def test_the_cadence_bounds_uploads_and_the_newest_save_goes_next(tmp_path):
    store = SlowStore(seconds=0.0)
    work = tmp_path / "work"
    uploader = StateUploader(SPEC, store, work, tmp_path / "snaps", every=0.6)
    uploader.start()
    started = time.monotonic()
    for step in range(1, 41):  # ~1.6 s of saves at 25 per second
        save(work, step, f"w{step}".encode(), files=2)
        uploader.on_save(work)
        time.sleep(0.04)
    seconds = time.monotonic() - started
    while_saving = uploader.stats.uploads
    stats = uploader.close(flush=False)  # a finished trial: its DONE comes next

    # an upload at most every 0.6 s: at t=0, then about every 0.6 s while saves keep coming
    assert 2 <= while_saving <= int(seconds / 0.6) + 1
    assert stats.uploads + stats.skipped + stats.dropped == 40
    assert stats.dropped in (0, 1)
    assert store.uploads[0][0] == 1
    assert_whole(store.uploads)


def test_an_urgent_save_goes_up_after_the_upload_in_flight_whatever_the_cadence(tmp_path):
    store = SlowStore(seconds=0.3)
    work = tmp_path / "work"
    uploader = StateUploader(SPEC, store, work, tmp_path / "snaps", every=300)
    uploader.start()
    save(work, 1, b"w1", files=2)
    uploader.on_save(work)  # the first save goes up at once; the next waits 300 s
    while uploader.pending is not None:  # taken by the upload thread
        time.sleep(0.001)
    save(work, 2, b"w2", files=2)
    uploader.on_save(work)
    save(work, 3, b"w3", files=2)
    started = time.monotonic()
    uploader.on_save(work, urgent=True)  # a spot notice: two minutes left
    while uploader.stats.uploads < 2 and time.monotonic() - started < 10:
        time.sleep(0.01)
    urgent_seconds = time.monotonic() - started
    save(work, 4, b"w4", files=2)
    uploader.on_save(work)  # not urgent: the cadence holds again
    time.sleep(0.5)
    assert uploader.stats.uploads == 2 and uploader.pending is not None
    stats = uploader.close(flush=False)

    assert [s for s, _ in store.uploads] == [1, 3]  # step 2 replaced by the urgent step 3
    assert urgent_seconds < 2.0  # about the 0.3 s left of upload 1 plus its own 0.3 s, not 300 s
    assert stats.urgent == 1 and stats.skipped == 1 and stats.dropped == 1
    assert_whole(store.uploads)

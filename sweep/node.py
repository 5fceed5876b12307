"""A node's own disk: temporary folders that no kill can leak, and a bounded artifact cache.

Layout under `node_root()` (`ITX_NODE_DIR`, else `<system temp>/itx-node`):

    tmp/<name>/  tmp/<name>.lock     a folder of a live process: it holds an flock on the .lock
    cache/<key>/ cache/<key>.lock    a downloaded artifact keyed by content; shared locks in use

A process killed with SIGKILL cannot delete its folders, but the kernel drops its locks: the next
process on the node that opens a temporary folder deletes every folder whose lock it can take.
Cache entries are evicted least recently used beyond `ITX_NODE_CACHE_GB` (default 20), never
while a live process holds one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_CACHE_GB = 20.0  # about 18 XLM-R base encoders (1.1 GB), 9 large ones (2.2 GB)


def node_root() -> Path:
    """Root of this node's own files (`ITX_NODE_DIR`, else <system temp>/itx-node)."""
    configured = os.environ.get("ITX_NODE_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "itx-node"


def _lock(path: Path, shared: bool = False, block: bool = True) -> int | None:
    """An open descriptor holding an flock on `path` (created if absent); None if `block` is
    off and another process holds it. Retries when the file was unlinked while we waited for
    it (the sweeper unlinks lock files it holds), so a lock held is always on the named file."""
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if block else fcntl.LOCK_NB)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if path.stat().st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def sweep_stale(base: Path) -> list[str]:
    """Delete every folder under `base` whose owner is dead (its lock can be taken); their names."""
    removed = []
    for lock in sorted(base.glob("*.lock")):
        fd = _lock(lock, block=False)
        if fd is None:  # a live owner
            continue
        try:
            name = lock.name.removesuffix(".lock")
            shutil.rmtree(base / name, ignore_errors=True)
            lock.unlink(missing_ok=True)  # while held: a waiter retries on a new file
            removed.append(name)
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d folders left by dead processes under %s", len(removed), base)
    return removed


def sweep_node() -> list[str]:
    """Delete this node's temporary folders left by dead processes (each trial starts so)."""
    base = node_root() / "tmp"
    return sweep_stale(base) if base.is_dir() else []


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A fresh node-local folder, deleted on exit, or by the next process here if this one dies."""
    base = node_root() / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    sweep_stale(base)
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    lock = base / f"{name}.lock"
    fd = _lock(lock)
    assert fd is not None  # a blocking lock always returns one
    folder = base / name
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        lock.unlink(missing_ok=True)
        os.close(fd)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


class NodeCache:
    """Downloaded artifacts (parent and root encoders) shared by every trial on a node."""

    def __init__(self, root: Path | None = None, max_bytes: int | None = None) -> None:
        self.root = root or node_root() / "cache"
        gb = float(os.environ.get("ITX_NODE_CACHE_GB", DEFAULT_CACHE_GB))
        self.max_bytes = int(gb * 2**30) if max_bytes is None else max_bytes

    @contextlib.contextmanager
    def use(self, key: str, fill: Callable[[Path], None]) -> Iterator[Path]:
        """The folder cached under `key`, filled by `fill(folder)` if absent (into a temporary
        folder, then one rename: an entry is whole or absent); held against eviction until exit.
        Eviction runs after each fill and each release."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / f"{key}.lock"
        fd = _lock(lock, shared=True)
        assert fd is not None
        try:
            entry = self.root / key
            if entry.exists():
                log.info("node cache hit %s", key)
            else:
                with temp_dir(f"fill-{key}-") as tmp:
                    fill(tmp / key)
                    try:
                        (tmp / key).rename(entry)
                    except OSError:  # another trial on this node filled it meanwhile
                        if not entry.exists():
                            raise
                self.evict(keep=key)
            os.utime(lock)  # the recency that eviction orders by
            yield entry
        finally:
            os.close(fd)
        self.evict(keep=None)  # what was held may go now, if the cache is over its bound

    def entries(self) -> list[tuple[float, str, int]]:
        """(last use, key, bytes) of every entry, least recently used first."""
        found = []
        for entry in self.root.iterdir():
            if entry.is_dir():
                lock = self.root / f"{entry.name}.lock"
                used = lock.stat().st_mtime if lock.exists() else 0.0
                found.append((used, entry.name, folder_bytes(entry)))
        return sorted(found)

    def evict(self, keep: str | None) -> None:
        """Drop least recently used entries not in use until the cache fits its bound."""
        entries = self.entries()
        total = sum(size for *_, size in entries)
        for _, key, size in entries:
            if total <= self.max_bytes:
                return
            if key == keep:
                continue
            fd = _lock(self.root / f"{key}.lock", block=False)
            if fd is None:  # a live trial reads it
                continue
            try:
                shutil.rmtree(self.root / key, ignore_errors=True)
                (self.root / f"{key}.lock").unlink(missing_ok=True)
            finally:
                os.close(fd)
            total -= size
            log.info("node cache evicted %s (%.1f MB)", key, size / 1e6)
        if total > self.max_bytes:
            log.warning(
                "node cache %s holds %.1f GB in use, above its %.1f GB bound",
                self.root,
                total / 2**30,
                self.max_bytes / 2**30,
            )

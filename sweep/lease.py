"""One sweep per run at a time, and one config per run: a lease with owner and heartbeat, and a
refusal to rerun a run name with a changed config.

`<run>/lease.json` holds {owner, host, pid, started, heartbeat, expires}; the holder rewrites it
every `ttl / 3` seconds. A second `itx run` on the same run finds a live lease and refuses in one
line; a lease whose heartbeat expired (its driver was killed, its machine lost), or whose pid is
gone on this same host, is taken over with a message. Written through the store's pyarrow
filesystem, so it works the same on a folder, s3:// and gs://.

Object stores have no create-if-absent in pyarrow, so taking a lease is write, wait `settle`
seconds, read back: of two drivers starting together, the one whose write landed last holds the
lease and the other reads a foreign owner and refuses. (The window left is a second driver whose
existence check and write straddle the first one's whole settle period.)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from sweep.store import ResultsStore, StorageError, first_line
from trainers.paths import excerpt

log = logging.getLogger(__name__)

LEASE_FILE = "lease.json"
TTL_SECONDS = 120.0  # a heartbeat older than this is stale: the holder is gone


class RunBusy(StorageError):
    """Another live sweep holds this run; the message is one line naming it."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


class RunLease:
    """Hold `<run>/lease.json` while a sweep runs: `with RunLease(store): run_sweep(...)`."""

    def __init__(self, store: ResultsStore, ttl: float = TTL_SECONDS, settle: float = 1.0) -> None:
        self.store, self.ttl, self.settle = store, ttl, settle
        self.path = store.path(LEASE_FILE)
        self.owner = uuid.uuid4().hex
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.started = _now()
        self.took_over: str | None = None  # description of a stale lease taken over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _payload(self) -> bytes:
        now = _now()
        return json.dumps(
            {
                "owner": self.owner,
                "host": self.host,
                "pid": self.pid,
                "started": self.started.isoformat(timespec="seconds"),
                "heartbeat": now.isoformat(timespec="seconds"),
                "expires": (now + dt.timedelta(seconds=self.ttl)).isoformat(timespec="seconds"),
            }
        ).encode()

    def read(self) -> dict[str, Any] | None:
        """The current lease, None when there is none; a damaged one reads as expired."""
        if not self.store.exists(self.path):
            return None
        try:
            lease = json.loads(self.store.read_bytes(self.path)[:4096])
            if not isinstance(lease, dict):
                raise TypeError
            dt.datetime.fromisoformat(lease["expires"])
        except (OSError, ValueError, TypeError, KeyError):
            return {"owner": None, "expires": "1970-01-01T00:00:00+00:00", "damaged": True}
        return lease

    def _stale(self, lease: dict[str, Any]) -> str | None:
        """Why `lease` no longer protects a sweep, or None while its holder is alive."""
        if lease.get("damaged"):
            return "a damaged lease file"
        expires = dt.datetime.fromisoformat(lease["expires"])
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=dt.UTC)
        who = f"{lease.get('host')}/pid {lease.get('pid')}"
        if expires < _now():
            return f"the lease of {who} (heartbeat expired at {lease['expires']})"
        pid = lease.get("pid")
        if lease.get("host") == self.host and isinstance(pid, int) and not _pid_alive(pid):
            return f"the lease of {who} (no such process on this host)"
        return None

    def _busy(self, lease: dict[str, Any]) -> RunBusy:
        return RunBusy(
            f"run {self.store.run!r} is in use by another itx run ({lease.get('host')}, pid "
            f"{lease.get('pid')}, since {lease.get('started')}, heartbeat {lease.get('heartbeat')})"
            f"; wait for it to end, or delete {self.path} if it is gone "
            f"(a lease expires {self.ttl:.0f} s after its last heartbeat)"
        )

    def acquire(self) -> RunLease:
        lease = self.read()
        if lease is not None and lease.get("owner") != self.owner:
            stale = self._stale(lease)
            if stale is None:
                raise self._busy(lease)
            self.took_over = stale
            log.warning("run %s: taking over %s", self.store.run, stale)
        self.store.write_bytes(self.path, self._payload())
        time.sleep(self.settle)  # a driver that raced us has written by now: last writer wins
        lease = self.read()
        if lease is None or lease.get("owner") != self.owner:
            raise self._busy(lease or {})
        self._thread = threading.Thread(target=self._beat, daemon=True, name="itx-lease")
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.store.write_bytes(self.path, self._payload())
            except Exception as err:  # a lost heartbeat only risks a takeover after ttl
                log.warning("run %s: lease heartbeat failed: %s", self.store.run, first_line(err))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            lease = self.read()
            if lease is not None and lease.get("owner") == self.owner:
                self.store.fs.delete_file(self.path)
        except OSError as err:  # read-only or full storage: the lease expires on its own
            log.warning("run %s: could not release the lease: %s", self.store.run, first_line(err))

    def __enter__(self) -> RunLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# Keys a rerun may change: where the run lives, how trials are scheduled, how it is analysed.
# Anything else changes results, so a changed value under the same run name is refused.
MAY_CHANGE = ("storage", "resources", "analysis", "difficulty.external")


class ConfigChanged(StorageError):
    """The run folder holds a sweep of another config; the message names the changed keys."""


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two config dumps. A key only one side has is a
    field another itx version added or removed, not a change of the study: not counted."""
    before, after = _flat(old), _flat(new)
    return sorted(
        key
        for key in before.keys() & after.keys()
        if before[key] != after[key]
        and not any(key == k or key.startswith(f"{k}.") for k in MAY_CHANGE)
    )


def check_config_unchanged(config: dict[str, Any], store: ResultsStore) -> None:
    """ConfigChanged (one line) when the run's manifest was written from another config.

    Choice: refuse rather than start a second folder. The run name stays the one place a study's
    results live, a report never mixes two configs, and a new name costs nothing: finished
    trials are content-addressed and reused from artifacts/, so only changed trials train."""
    try:
        manifest = store.read_json("manifest.json")
    except (OSError, ValueError) as err:
        log.warning("run %s: manifest unreadable (%s); rewriting it", store.run, first_line(err))
        return
    old = manifest.get("config") if isinstance(manifest, dict) else None
    if not isinstance(old, dict):
        return  # no manifest yet (a new run) or a damaged one: this run writes it
    changed = changed_keys(old, config)
    if changed:
        first = changed[0]
        was, now = _flat(old)[first], _flat(config)[first]
        more = f" and {len(changed) - 1} more ({', '.join(changed[1:4])})" if changed[1:] else ""
        raise ConfigChanged(
            f"run {store.run!r} was started with another config: {first} "
            f"{excerpt(was, 30)} -> {excerpt(now, 30)}{more}; give this config a new name "
            "(finished trials are reused from artifacts/), or restore the old values"
        )

"""The results store: content-addressed artifacts and tidy result rows, local or object storage.

The layout and the row schemas are in `sweep.schema`.

Artifacts are keyed by content, not by Ray's random trial ids, so two sweeps sharing an
(intermediate, seed) with the same settings share its encoder and never train it twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweep import schema
from sweep.plan import TrialSpec
from sweep.schema import ROW_COLUMNS, StorageError, open_store  # noqa: F401 (re-exports)
from trainers.paths import FIRST_ANSWER_SECONDS, check_name, excerpt, store_path, within

log = logging.getLogger(__name__)


def first_line(err: BaseException | str) -> str:
    """`Type: message`, first non-empty line only, at most 300 characters."""
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else text)[:300]


class ResultsStore:
    def __init__(self, root: str, name: str) -> None:
        self.uri = root
        self.fs, self.root = open_store(root)
        try:
            self.name = check_name(name)
        except ValueError as err:
            raise StorageError(f"run name {err}") from None
        self.run = store_path(self.root, name)
        self._hashes: dict[str, str] = {}  # sha256 of files uploaded here, until their DONE

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    # ---- paths ----------------------------------------------------------------------------
    def artifact(self, spec: TrialSpec) -> str:
        return self.artifact_of(spec.kind, spec.key)

    def artifact_of(self, kind: str, key: str) -> str:
        return store_path(self.root, schema.artifact_path(kind, key))

    def scratch(self, spec: TrialSpec) -> str:
        return store_path(self.root, schema.scratch_path(spec.key))

    def path(self, relative: str) -> str:
        """A path inside this run's folder; ValueError for anything that would leave it."""
        return store_path(self.run, relative)

    def result_file(self, spec: TrialSpec) -> str:
        return store_path(self.run, schema.result_path(spec.key))

    def fits_file(self, spec: TrialSpec) -> str:
        return store_path(self.run, schema.fits_path(spec.key))

    def state_root(self, spec: TrialSpec) -> str:
        """Versioned training state of a trial on an object store: v<step>/ folders + LATEST."""
        return self.scratch(spec)

    def record_file(self, key: str) -> str:
        return store_path(self.run, schema.record_path(key))

    # ---- checks ---------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Write, read back and delete a probe under the run folder; StorageError if any fails."""
        probe = store_path(self.run, f".probe-{uuid.uuid4().hex}")

        def write_read_delete() -> None:
            self.write_bytes(probe, b"probe")
            if self.read_bytes(probe) != b"probe":
                raise OSError("a written probe file read back different bytes")
            self.fs.delete_file(probe)

        try:  # bounded: offline, some object-store calls retry for minutes
            within(FIRST_ANSWER_SECONDS, f"storage {self.uri!r}", write_read_delete)
        except OSError as err:
            raise StorageError(f"storage {self.uri!r} is not writable: {first_line(err)}") from None

    def size(self, relative: str = "") -> int:
        """Bytes of every file under the root (or under `relative` inside it)."""
        base = store_path(self.root, relative) if relative else self.root
        if not self.exists(base):
            return 0
        found = self.fs.get_file_info(pafs.FileSelector(base, recursive=True))
        return sum(info.size or 0 for info in found if info.type == pafs.FileType.File)

    # ---- markers and rows -------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def is_done(self, spec: TrialSpec) -> bool:
        """DONE and, for a fine-tuning trial, the rows it vouches for: DONE beside missing rows
        is not done, the trial reruns (it was a traceback on every `itx run`)."""
        base = self.artifact(spec)
        if not self.exists(f"{base}/DONE"):
            return False
        if spec.kind != "pretrain" and not self.exists(f"{base}/rows.parquet"):
            log.warning("trial %s: DONE without rows.parquet; not done, it reruns", spec.key)
            return False
        return True

    def mark_skipped(self, spec: TrialSpec, why: str) -> None:
        """Why `spec` was skipped, beside its DONE (sweep.schema.SKIPPED_FILE): for `itx status`
        and for the trials that continue from it (a skipped stage skips its targets)."""
        path = f"{self.artifact(spec)}/{schema.SKIPPED_FILE}"
        self.write_bytes(path, json.dumps({"reason": why}).encode())

    def skipped_reason(self, artifact: str) -> str | None:
        """The reason the trial of `artifact` was skipped (at most 300 characters), None when it
        was not; a reason file that cannot be read still says it was skipped."""
        path = f"{artifact}/{schema.SKIPPED_FILE}"
        if not self.exists(path):
            return None
        try:
            reason = json.loads(self.read_bytes(path)).get("reason")
        except (OSError, ValueError, AttributeError):
            reason = None
        return str(reason)[:300] if reason else "skipped (reason unreadable)"

    def write_bytes(self, path: str, data: bytes) -> None:
        """Atomic where the filesystem allows: temp file in the same folder, then rename."""
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, path)
        except OSError:  # a full disk or lost mount: leave nothing half-written behind
            if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)
            raise

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def write_rows(
        self, spec: TrialSpec, rows: pd.DataFrame, fits: pd.DataFrame | None = None
    ) -> None:
        """Rows (and the trial's fine-tunes, `fits`) into the artifact (shared) and the run
        (reported), each in its schema; DONE last, so a kill between them leaves the trial
        unfinished, not half-written."""
        for name, frame, schema_of, run_file in (
            ("fits.parquet", fits, schema.FITS, self.fits_file(spec)),
            ("rows.parquet", rows, schema.ROWS, self.result_file(spec)),
        ):
            if frame is None:
                continue
            sink = pa.BufferOutputStream()
            pq.write_table(schema.table(frame, schema_of), sink)
            data = sink.getvalue().to_pybytes()
            self.write_bytes(f"{self.artifact(spec)}/{name}", data)
            self._hashes[f"{self.artifact(spec)}/{name}"] = hashlib.sha256(data).hexdigest()
            self.write_bytes(run_file, data)
        self.mark_done(spec)

    def mark_done(self, spec: TrialSpec) -> None:
        """Write DONE, after every other file of the artifact: it lists them (bytes, sha256)."""
        self.write_bytes(f"{self.artifact(spec)}/DONE", self.done_marker(self.artifact(spec)))

    def done_marker(self, path: str) -> bytes:
        """The DONE of the artifact at `path`: each file's bytes, and its sha256 where this
        process wrote it (upload_dir, write_rows). It keys the node cache by content. Temp files
        of writers killed before their rename (`write_bytes`) are deleted, not listed."""
        files: dict[str, dict[str, Any]] = {}
        listing = pafs.FileSelector(path, recursive=True, allow_not_found=True)
        for info in self.fs.get_file_info(listing):
            rel = info.path[len(path) + 1 :]
            if info.type != pafs.FileType.File or rel == "DONE":
                continue
            if info.base_name.startswith(".tmp-"):
                self.fs.delete_file(info.path)
                continue
            files[rel] = {"bytes": info.size, "sha256": self._hashes.pop(info.path, None)}
        return json.dumps({"format": 1, "files": files}, sort_keys=True, indent=1).encode()

    def read_rows(self, spec: TrialSpec) -> pd.DataFrame:
        data = self.read_bytes(f"{self.artifact(spec)}/rows.parquet")
        return pq.read_table(pa.BufferReader(data)).to_pandas()

    def publish(self, spec: TrialSpec) -> None:
        """Copy a finished trial's rows into this run (a trial shared with another sweep)."""
        if spec.kind == "pretrain":
            return
        for name, run_file in (("fits.parquet", self.fits_file(spec)), ("rows.parquet", None)):
            run_file = run_file or self.result_file(spec)
            source = f"{self.artifact(spec)}/{name}"
            if not self.exists(run_file) and self.exists(source):
                self.write_bytes(run_file, self.read_bytes(source))

    # ---- folders: encoders and training state ------------------------------------------------
    @contextlib.contextmanager
    def local_copy(self, path: str) -> Iterator[Path]:
        """A local folder holding the finished artifact at `path`: itself on a local root, else
        the node cache's copy (sweep.node), keyed by the content its DONE lists and held against
        eviction until exit. A download that does not match DONE's byte counts is refused."""
        if self.is_local:
            yield Path(path)
            return
        from sweep.node import NodeCache

        if not self.exists(f"{path}/DONE"):
            raise FileNotFoundError(f"artifact {path} is not finished: it has no DONE")
        marker = self.read_bytes(f"{path}/DONE")
        key = content_key(marker, path)
        with NodeCache().use(key, lambda folder: self._download(path, folder, marker)) as folder:
            yield folder

    def _download(self, path: str, target: Path, marker: bytes) -> None:
        pafs.copy_files(
            path,
            str(target),
            source_filesystem=self.fs,
            destination_filesystem=pafs.LocalFileSystem(),
        )
        for rel, meta in _listed(marker).items():
            got = (target / rel).stat().st_size if (target / rel).exists() else None
            if got != meta["bytes"]:
                raise OSError(f"artifact {path}: {rel} has {got} bytes, DONE lists {meta['bytes']}")

    def upload_dir(self, local: Path, path: str, hashed: bool = True) -> int:
        """Put a local folder's files at `path` (no-op when it already is there); bytes sent.

        Never its DONE: a local folder's DONE is a local mark, and the store writes an
        artifact's own DONE after everything else (`mark_done`). Files go up in parallel, so
        nothing may rely on their order. `hashed` records sha256s for the DONE to list.
        """
        if self.is_local and Path(path) == local:
            return 0
        files = [f for f in sorted(local.rglob("*")) if f.is_file() and f != local / "DONE"]

        def put(file: Path) -> int:
            dest = f"{path}/{file.relative_to(local).as_posix()}"
            self.upload_file(file, dest)
            if hashed:
                self._hashes[dest] = file_sha256(file)
            return file.stat().st_size

        with ThreadPoolExecutor(max_workers=min(8, len(files) or 1)) as pool:
            return sum(pool.map(put, files))

    def upload_file(self, local: Path, path: str) -> int:
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(
            str(local),
            path,
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=self.fs,
        )
        return local.stat().st_size

    def delete_dir(self, path: str) -> None:
        if self.exists(path):
            self.fs.delete_dir(path)

    # ---- training state on an object store -----------------------------------------------------
    def push_state(
        self, spec: TrialSpec, snapshot: Path, step: int, best: str | None
    ) -> str | None:
        """Upload one whole save as v<step>/, then point LATEST at it, then drop older versions
        and best weights no longer named: a kill at any moment leaves LATEST naming a complete
        version. `snapshot` holds `state/`, `progress.json` and, only when they changed since
        the upload named `best`, `best.safetensors`. Returns the name of the best weights now."""
        base = self.state_root(spec)
        version = f"v{step:08d}"
        if (snapshot / "best.safetensors").exists():
            best = f"best-{step:08d}.safetensors"
            self.upload_file(snapshot / "best.safetensors", store_path(base, best))
        self.upload_dir(snapshot / "state", store_path(base, version, "state"), hashed=False)
        self.upload_file(snapshot / "progress.json", store_path(base, version, "progress.json"))
        self.write_bytes(store_path(base, version, "BEST"), (best or "").encode())
        self.write_bytes(store_path(base, "LATEST"), version.encode())
        for info in self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
            name = info.base_name
            if info.type == pafs.FileType.Directory and name.startswith("v") and name < version:
                self.fs.delete_dir(info.path)
            elif name.startswith("best-") and name != best:
                self.fs.delete_file(info.path)
        return best

    def pull_state(self, spec: TrialSpec, local: Path) -> int:
        """Download the latest pushed state into `local` (emptied first), its best weights as
        best.safetensors and their name in BEST; its step, 0 if none."""
        latest = store_path(self.state_root(spec), "LATEST")
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        if not self.exists(latest):
            return 0
        version = self.read_bytes(latest)[:64].decode(errors="replace").strip()
        try:
            step = int(version.removeprefix("v"))
            source = store_path(self.state_root(spec), version)  # a forged LATEST stays inside
        except ValueError:
            log.warning(
                "trial %s: LATEST %r names no state version; from the start", spec.key, version
            )
            return 0
        pafs.copy_files(
            source,
            str(local),
            source_filesystem=self.fs,
            destination_filesystem=pafs.LocalFileSystem(),
        )
        best = _best_name(local / "BEST")
        if best:
            pafs.copy_files(
                store_path(self.state_root(spec), best),
                str(local / "best.safetensors"),
                source_filesystem=self.fs,
                destination_filesystem=pafs.LocalFileSystem(),
            )
        return step

    # ---- per-trial records (what `itx status` reads) -------------------------------------------
    def write_record(self, key: str, record: dict[str, Any]) -> None:
        self.write_bytes(self.record_file(key), json.dumps(record, default=str).encode())

    def read_records(self) -> dict[str, dict[str, Any]]:
        """Every trial record of this run, by key; a half-written one is skipped, not fatal."""
        folder = store_path(self.run, "trials")
        records: dict[str, dict[str, Any]] = {}
        for info in self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
            if info.type != pafs.FileType.File or not info.base_name.endswith(".json"):
                continue
            try:
                records[info.base_name.removesuffix(".json")] = json.loads(
                    self.read_bytes(info.path)
                )
            except (OSError, ValueError):
                continue
        return records

    # ---- run-level files -----------------------------------------------------------------------
    def write_json(self, relative: str, payload: Any) -> None:
        self.write_bytes(
            store_path(self.run, relative), json.dumps(payload, indent=2, default=str).encode()
        )

    def read_json(self, relative: str) -> Any:
        path = store_path(self.run, relative)
        return json.loads(self.read_bytes(path)) if self.exists(path) else None


def _best_name(marker: Path) -> str:
    """The best-weights file a version's BEST names; "" for none. A forged BEST (a path, not a
    `best-<step>.safetensors` name) is CorruptState: the trial discards the state."""
    from trainers.loop import CorruptState

    if not marker.exists():
        return ""
    best = marker.read_bytes()[:200].decode(errors="replace").strip()
    if best and not re.fullmatch(r"best-\d{8}\.safetensors", best):
        raise CorruptState(f"BEST names {excerpt(best)}, not a best-<step>.safetensors file")
    return best


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _listed(marker: bytes) -> dict[str, dict[str, Any]]:
    """The files a DONE lists; none for the one-line DONE of older stores."""
    try:
        return json.loads(marker)["files"]
    except (ValueError, KeyError, TypeError):
        return {}


def content_key(marker: bytes, path: str) -> str:
    """Node-cache key of an artifact: its DONE's hash when that lists every file's sha256 (equal
    content, one entry, whichever root it came from), else also its path."""
    files = _listed(marker)
    whole = bool(files) and all(meta.get("sha256") for meta in files.values())
    payload = marker if whole else path.encode() + b"\n" + marker
    return hashlib.sha256(payload).hexdigest()[:24]

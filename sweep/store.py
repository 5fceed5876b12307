"""The results store: content-addressed artifacts and tidy result rows, local or object storage.

Layout under the storage root (a folder or a `s3://`/`gs://` URI, through pyarrow's filesystems):

    <root>/artifacts/<kind>/<key>/      encoder (safetensors), rows.parquet, DONE written last
    <root>/scratch/<key>/               resumable training state; deleted once DONE exists
    <root>/<name>/manifest.json         config, package versions, git commit, the planned trials
    <root>/<name>/results/<key>.parquet rows of each finished trial (what `itx report` reads)
    <root>/<name>/status.json           errored and skipped trials, with reasons

Artifacts are keyed by content, not by Ray's random trial ids, so two sweeps sharing an
(intermediate, seed) with the same settings share its encoder and never train it twice.
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweep.plan import TrialSpec

log = logging.getLogger(__name__)

ROW_COLUMNS = (
    "kind",
    "intermediate",
    "seed",
    "target_task",
    "language",
    "split",
    "metric",
    "value",
    "n_examples",
    "primary",
    "chance",
    "majority",
    "train_size",
    "trial_key",
    "encoder_sha",
    "seconds",
)


def open_root(uri: str) -> tuple[pafs.FileSystem, str]:
    """Filesystem and base path for a folder or URI; local folders are made absolute."""
    if "://" not in uri:
        path = Path(uri).expanduser().resolve()
        return pafs.LocalFileSystem(), path.as_posix()
    fs, base = pafs.FileSystem.from_uri(uri)
    return fs, base.rstrip("/")


class ResultsStore:
    def __init__(self, root: str, name: str) -> None:
        self.uri = root
        self.fs, self.root = open_root(root)
        self.name = name
        self.run = f"{self.root}/{name}"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    # ---- paths ----------------------------------------------------------------------------
    def artifact(self, spec: TrialSpec) -> str:
        return f"{self.root}/artifacts/{spec.kind}/{spec.key}"

    def artifact_of(self, kind: str, key: str) -> str:
        return f"{self.root}/artifacts/{kind}/{key}"

    def scratch(self, spec: TrialSpec) -> str:
        return f"{self.root}/scratch/{spec.key}"

    def result_file(self, spec: TrialSpec) -> str:
        return f"{self.run}/results/{spec.key}.parquet"

    # ---- markers and rows -------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def is_done(self, spec: TrialSpec) -> bool:
        return self.exists(f"{self.artifact(spec)}/DONE")

    def write_bytes(self, path: str, data: bytes) -> None:
        """Atomic where the filesystem allows: temp file in the same folder, then rename."""
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, path)

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def write_rows(self, spec: TrialSpec, rows: pd.DataFrame) -> None:
        """Rows into the artifact (shared) and the run (reported); DONE last, so a kill between
        them leaves the trial unfinished, not half-written."""
        table = pa.Table.from_pandas(rows[list(ROW_COLUMNS)], preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        self.write_bytes(f"{self.artifact(spec)}/rows.parquet", data)
        self.write_bytes(self.result_file(spec), data)
        self.write_bytes(f"{self.artifact(spec)}/DONE", b"ok\n")

    def mark_done(self, spec: TrialSpec) -> None:
        self.write_bytes(f"{self.artifact(spec)}/DONE", b"ok\n")

    def read_rows(self, spec: TrialSpec) -> pd.DataFrame:
        data = self.read_bytes(f"{self.artifact(spec)}/rows.parquet")
        return pq.read_table(pa.BufferReader(data)).to_pandas()

    def publish(self, spec: TrialSpec) -> None:
        """Copy a finished trial's rows into this run (a trial shared with another sweep)."""
        if spec.kind != "pretrain" and not self.exists(self.result_file(spec)):
            self.write_bytes(
                self.result_file(spec), self.read_bytes(f"{self.artifact(spec)}/rows.parquet")
            )

    # ---- folders: encoders and training state ------------------------------------------------
    def local_dir(self, path: str, cache: Path | None = None) -> Path:
        """A local folder with the contents of `path`: itself when local, else a downloaded copy."""
        if self.is_local:
            return Path(path)
        target = Path(cache or tempfile.mkdtemp(prefix="itx-")) / path.rsplit("/", 1)[-1]
        if not (target / "DONE").exists():
            pafs.copy_files(
                path,
                str(target),
                source_filesystem=self.fs,
                destination_filesystem=pafs.LocalFileSystem(),
            )
        return target

    def upload_dir(self, local: Path, path: str) -> None:
        """Put a local folder at `path` (no-op when it already is there)."""
        if self.is_local and Path(path) == local:
            return
        pafs.copy_files(
            str(local),
            path,
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=self.fs,
        )

    def delete_dir(self, path: str) -> None:
        if self.exists(path):
            self.fs.delete_dir(path)

    # ---- run-level files -----------------------------------------------------------------------
    def write_json(self, relative: str, payload: Any) -> None:
        self.write_bytes(
            f"{self.run}/{relative}", json.dumps(payload, indent=2, default=str).encode()
        )

    def read_json(self, relative: str) -> Any:
        path = f"{self.run}/{relative}"
        return json.loads(self.read_bytes(path)) if self.exists(path) else None

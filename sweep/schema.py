"""What the results store holds, in one place: the row schemas, the reserved encoder names, the
store layout and how a store is opened. Only pyarrow: every writer (sweep.store, sweep.trial)
and every reader (analysis.results, analysis.simulate, plain pandas) imports it without torch
or Ray.

Every Parquet file of a run is written with `ROWS` (results/) or `FITS` (fits/), so a folder of
them is one dataset: `pandas.read_parquet("<run>/results")` reads every result row of a run.

Layout under the storage root (a folder or a `s3://`/`gs://` URI):

    <root>/artifacts/<kind>/<key>/      encoder (safetensors), rows.parquet, fits.parquet, DONE last
                                        (DONE lists every file with its bytes and sha256);
                                        skipped.json: a target skipped, not trained (its reason)
    <root>/scratch/<key>/               resumable training state; deleted once DONE exists
                                        (object stores: v<step>/, best-<step>.safetensors, LATEST)
    <root>/<name>/manifest.json         config, package versions, git commit, the planned trials
    <root>/<name>/results/<key>.parquet rows of each finished trial (what `itx report` reads)
    <root>/<name>/fits/<key>.parquet    one row per fine-tune of the trial: dev curve, health
    <root>/<name>/status.json           errored and skipped trials, with reasons
    <root>/<name>/trials/<key>.json     one record per trial: state, node, pid, seconds, error
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from trainers.paths import check_storage, excerpt

BASELINE = "none"  # the pretrained encoder with no intermediate training
SCRATCH = "scratch"  # a random, never pretrained encoder fine-tuned the same way: the control
RESERVED = (BASELINE, SCRATCH)  # parent names that are no intermediate task
SKIPPED_FILE = "skipped.json"  # in a finished artifact: the trial was skipped (`itx status`)

# One row per (trial, language, split, metric). The last eight columns describe the fine-tune
# that produced the trial's model (the same on every row of a trial); see FITS for all of them.
ROWS = pa.schema(
    [
        ("kind", pa.string()),
        ("intermediate", pa.string()),
        ("seed", pa.int64()),
        ("target_task", pa.string()),  # null on intermediate rows
        ("language", pa.string()),
        ("split", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("n_examples", pa.int64()),
        ("primary", pa.bool_()),
        ("chance", pa.float64()),
        ("majority", pa.float64()),
        ("train_size", pa.int64()),
        ("trial_key", pa.string()),
        ("encoder_sha", pa.string()),
        ("seconds", pa.float64()),
        ("shared_training_data", pa.bool_()),  # the target's English training data is the parent's
        ("dev_score", pa.float64()),  # selected English dev score, primary metric
        ("best_epoch", pa.int64()),  # the selected epoch (0-based); -1: not trained
        ("steps", pa.int64()),  # optimizer steps
        ("loss_start", pa.float64()),  # mean training loss of the first steps
        ("loss_end", pa.float64()),  # mean training loss of the last epoch
        ("healthy", pa.bool_()),  # every fine-tune of the trial passed trainers.health
        ("restarts", pa.int64()),  # restarts the trial needed (0: its first fine-tune)
        ("restart_seed", pa.int64()),  # training seed of the kept fine-tune (the seed if none)
    ]
)
ROW_COLUMNS = tuple(ROWS.names)
# columns added after the first release, with the value that older result files mean
OPTIONAL_COLUMNS: dict[str, Any] = {
    "shared_training_data": False,
    "dev_score": float("nan"),
    "best_epoch": -1,
    "steps": -1,
    "loss_start": float("nan"),
    "loss_end": float("nan"),
    "healthy": True,  # written before health checks existed: not known to be unhealthy
    "restarts": 0,
    "restart_seed": -1,
}
# One measurement; a second row with the same identity is a duplicate and would be counted twice.
ROW_IDENTITY = ("kind", "intermediate", "seed", "target_task", "language", "split", "metric")

# One row per fine-tune attempt: a trial's own, its earlier stages', its V-information null model's,
# each restart; and one row (attempt -1) for a trial skipped because its parent was unhealthy.
FITS = pa.schema(
    [
        ("trial_key", pa.string()),
        ("kind", pa.string()),
        ("intermediate", pa.string()),
        ("seed", pa.int64()),
        ("target_task", pa.string()),
        ("part", pa.string()),  # "main", "stage-0" (XCOPA's SIQA), "null" (V-information)
        ("task", pa.string()),
        ("attempt", pa.int64()),  # 0: first fine-tune, k: k-th restart, -1: skipped
        ("restart_seed", pa.int64()),
        ("metric", pa.string()),  # the primary metric the curve and the rule use
        ("dev_curve", pa.list_(pa.float64())),  # English dev score after every epoch
        ("best_epoch", pa.int64()),
        ("dev_score", pa.float64()),
        ("n_dev", pa.int64()),
        ("chance", pa.float64()),
        ("majority", pa.float64()),  # most frequent training label, scored on English dev
        ("threshold", pa.float64()),  # the dev score the rule asks for (trainers.health)
        ("steps", pa.int64()),
        ("loss_start", pa.float64()),
        ("loss_end", pa.float64()),
        ("healthy", pa.bool_()),
        ("reason", pa.string()),  # why it is not healthy; null when healthy
        ("kept", pa.bool_()),  # the attempt whose model the trial kept
    ]
)
FIT_COLUMNS = tuple(FITS.names)

PANDAS_DTYPES = {pa.string(): "object", pa.int64(): "int64", pa.float64(): "float64"}
PANDAS_DTYPES[pa.bool_()] = "bool"


def dtypes(schema: pa.Schema) -> dict[str, str]:
    """The pandas dtype of every column (lists stay objects)."""
    return {f.name: PANDAS_DTYPES.get(f.type, "object") for f in schema}


ROW_DTYPES = dtypes(ROWS)


# ---- opening a store: the storage root of `itx run`, or a run folder of `itx report` ---------
# Google Cloud Storage retries a failing call for 15 minutes by default: offline, `itx` would
# look hung. Bounded here unless the URI sets it (gs://bucket/root?retry_limit_seconds=60).
GCS_RETRY_LIMIT_SECONDS = 15


class StorageError(OSError):
    """The storage cannot be used; the message is one line naming the root and the cause."""


def open_store(uri: str) -> tuple[pafs.FileSystem, str]:
    """Filesystem and base path of a folder (made absolute) or a URI itx accepts
    (trainers.paths.check_storage: file://, s3://, gs://); StorageError (one line) otherwise.

    Object-store credentials and endpoints come from the environment only (AWS_ACCESS_KEY_ID,
    AWS_ENDPOINT_URL, instance profiles...), never from the config, so none is ever written out.
    """
    try:
        check_storage(uri)
    except ValueError as err:
        raise StorageError(str(err)) from None
    if "://" not in uri:
        return pafs.LocalFileSystem(), Path(uri).expanduser().resolve().as_posix()
    if uri.split("://", 1)[0].lower() in ("gs", "gcs") and "retry_limit_seconds" not in uri:
        uri += ("&" if "?" in uri else "?") + f"retry_limit_seconds={GCS_RETRY_LIMIT_SECONDS}"
    try:
        fs, base = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, ValueError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StorageError(f"storage {excerpt(uri)}: {first[:200]}") from None
    return fs, base.rstrip("/")


# ---- layout: artifacts and scratch under the storage root, the rest under <root>/<name> ------
RESULTS_DIR, FITS_DIR, TRIALS_DIR = "results", "fits", "trials"  # run-level folders
MANIFEST, STATUS = "manifest.json", "status.json"


def artifact_path(kind: str, key: str) -> str:
    return f"artifacts/{kind}/{key}"


def scratch_path(key: str) -> str:
    return f"scratch/{key}"


def result_path(key: str) -> str:
    return f"{RESULTS_DIR}/{key}.parquet"


def fits_path(key: str) -> str:
    return f"{FITS_DIR}/{key}.parquet"


def record_path(key: str) -> str:
    return f"{TRIALS_DIR}/{key}.json"


def table(frame: Any, schema: pa.Schema) -> pa.Table:
    """A pandas frame as an Arrow table of exactly `schema` (column order, types; all-null
    columns keep their type, so files of one folder always read as one dataset)."""
    return pa.Table.from_pandas(frame[list(schema.names)], schema=schema, preserve_index=False)

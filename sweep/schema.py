"""What the results store holds, in one place: the row schemas, the reserved encoder names and
the store layout. Only pyarrow: every writer (sweep.store, sweep.trial) and every reader
(analysis.results, analysis.simulate, plain pandas) imports it without torch or Ray.

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

from typing import Any

import pyarrow as pa

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

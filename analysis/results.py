"""Read a run folder of the results store (local path or object-store URI) into one table.

Only pandas and pyarrow: reports build on a laptop from the store alone, without Ray or torch.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweep import schema
from sweep.schema import BASELINE, SCRATCH  # noqa: F401 (BASELINE re-exported)
from trainers.paths import excerpt
from trainers.runfiles import manifest_problem

CONTROL = SCRATCH  # the name the analysis reads it by

log = logging.getLogger(__name__)

# one definition of the schema and the reserved names, shared with the writers
ROW_DTYPES = schema.ROW_DTYPES
OPTIONAL_COLUMNS = schema.OPTIONAL_COLUMNS
ROW_IDENTITY = schema.ROW_IDENTITY
SCHEMA = schema.ROWS


@dataclass
class Run:
    """A loaded run: its manifest, every readable result row, its status and what went wrong."""

    manifest: dict[str, Any]
    rows: pd.DataFrame
    status: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"errored": {}, "skipped": {}}
    )
    problems: list[str] = field(default_factory=list)
    embeddings: dict[str, list[float]] = field(default_factory=dict)  # task -> TextEmb vector
    # every fine-tune of every trial (sweep.schema.FITS): dev curves, restarts, health
    fits: pd.DataFrame = field(default_factory=lambda: empty_fits())
    # rows of unhealthy trials, left out of `rows` (and so of every test) under `health.policy:
    # restart`; empty under `flag`, which keeps them in `rows`
    excluded: pd.DataFrame = field(default_factory=lambda: empty_rows())


class RunError(ValueError):
    """A run that cannot be reported as it is; the message is one line naming what is wrong."""


def empty_rows() -> pd.DataFrame:
    """A zero-row table with the store's columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in ROW_DTYPES.items()})


def empty_fits() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in schema.dtypes(schema.FITS).items()})


def health_policy(manifest: dict[str, Any]) -> str:
    """The run's `health.policy` (runs from before health checks: `restart`, nothing flagged)."""
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    health = config.get("health") if isinstance(config.get("health"), dict) else {}
    return str(health.get("policy", "restart"))


def split_healthy(rows: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows the analysis uses, rows left out): unhealthy trials' rows are left out unless the
    policy is `flag` (kept and flagged)."""
    bad = ~rows["healthy"].astype(bool)
    if policy == "flag" or not bad.any():
        return rows, rows.iloc[0:0]
    return rows.loc[~bad].reset_index(drop=True), rows.loc[bad].reset_index(drop=True)


def load_run(run: str) -> Run:
    """Manifest, status and all result rows of `run`.

    Unreadable or malformed files (truncated parquet, missing columns, bad JSON) are skipped and
    described in `problems`; only a folder with neither a manifest nor results raises
    FileNotFoundError.
    """
    fs, base = schema.open_store(run)  # StorageError for a URI itx does not accept (ftp://...)
    problems: list[str] = []
    manifest = _read_manifest(fs, base, run)
    status = _read_json(fs, f"{base}/{schema.STATUS}", problems)
    results_dir = f"{base}/{schema.RESULTS_DIR}"
    kind = fs.get_file_info(results_dir).type
    if manifest is None and kind != pafs.FileType.Directory:
        raise FileNotFoundError(f"{run}: no manifest.json and no results/; is this a run folder?")
    if kind not in (pafs.FileType.Directory, pafs.FileType.NotFound):
        raise RunError(f"{run}: results is not a folder; move it away and rerun `itx run`")
    if manifest is None:
        problems.append("manifest.json is missing; every result file is used, trial counts unknown")
    status = _clean_status(status, problems)
    rows = _read_results(fs, results_dir, problems, manifest)
    rows, excluded = split_healthy(rows, health_policy(manifest or {}))
    fits = _read_fits(fs, f"{base}/{schema.FITS_DIR}", problems)
    for fit in fits[fits["attempt"] == -1].itertuples():  # children of unhealthy intermediates
        status["skipped"].setdefault(str(fit.trial_key), str(fit.reason))
    embeddings = _read_embeddings(fs, f"{base}/task_embeddings", problems)
    for problem in problems:
        log.warning("%s: %s", run, problem)
    return Run(
        manifest=manifest or {},
        rows=rows,
        status=status,
        problems=problems,
        embeddings=embeddings,
        fits=fits,
        excluded=excluded,
    )


def _read_manifest(fs: pafs.FileSystem, base: str, run: str) -> dict[str, Any] | None:
    """The manifest, None when absent; RunError (one line) when present but unusable: without
    its trial list the report cannot tell this run's rows from stale or foreign ones."""
    path = f"{base}/{schema.MANIFEST}"
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return None
    problem = None
    if info.type != pafs.FileType.File:
        problem = "is not a file"
    elif info.size is not None and info.size > MAX_MANIFEST_BYTES:
        problem = f"is {info.size:,} bytes; a manifest is at most {MAX_MANIFEST_BYTES:,}"
    else:
        try:
            with fs.open_input_stream(path) as stream:
                manifest = json.loads(stream.read(MAX_MANIFEST_BYTES + 1))
            problem = manifest_problem(manifest)
        except (OSError, ValueError, RecursionError) as err:
            problem = f"unreadable ({_short(err)})"
    if problem:
        raise RunError(
            f"{run}: manifest.json {problem}; rerun `itx run` with the config to rewrite it"
        )
    return manifest


MAX_MANIFEST_BYTES = 256 << 20  # 100k trials are about 20 MB


def _planned_only(
    rows: pd.DataFrame, manifest: dict[str, Any], problems: list[str]
) -> pd.DataFrame:
    """Rows of the manifest's trials only, by trial key: a result file left by an earlier
    config under the same run name, or a foreign one, is ignored and named."""
    planned = {t["key"] for t in manifest["trials"] if t.get("kind") != "pretrain"}
    why = (
        "rows of {trials} trials not in the manifest (an earlier config of this run, or "
        "foreign files) ignored: {keys}"
    )
    return _ignored(rows, ~rows["trial_key"].isin(planned), why, problems)


def _ignored(rows: pd.DataFrame, drop: pd.Series, why: str, problems: list[str]) -> pd.DataFrame:
    """`rows` without the `drop` ones, and a problem naming how many and of which trials:
    `why` is formatted with the number of trials and a few of their keys."""
    if not drop.any():
        return rows
    keys = sorted(rows.loc[drop, "trial_key"].astype(str).unique())
    problems.append(f"{int(drop.sum())} " + why.format(trials=len(keys), keys=_some(keys)))
    return rows.loc[~drop].reset_index(drop=True)


def _some(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f" ... (+{len(keys) - n})" if len(keys) > n else "")


def _list_files(fs: pafs.FileSystem, folder: str, problems: list[str]) -> list[pafs.FileInfo]:
    """Files directly in `folder` (none when it is absent). A local file whose name is not UTF-8
    (pyarrow cannot list such a folder) is named as a problem and skipped."""
    selector = pafs.FileSelector(folder, allow_not_found=True)
    try:  # pyarrow decodes a name when `.path` is read, not when listing
        return [i for i in fs.get_file_info(selector) if i.is_file and i.path]
    except UnicodeDecodeError:
        if not isinstance(fs, pafs.LocalFileSystem):
            problems.append(
                f"{folder.rsplit('/', 1)[-1]}: a file name is not UTF-8; folder skipped"
            )
            return []
    infos = []
    short = folder.rsplit("/", 1)[-1]
    for entry in os.scandir(os.fsencode(folder)):
        try:
            name = entry.name.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{short}/{excerpt(entry.name, 40)}: file name is not UTF-8, ignored")
            continue
        info = fs.get_file_info(f"{folder}/{name}")
        if info.is_file:
            infos.append(info)
    return infos


def _read_fits(fs: pafs.FileSystem, folder: str, problems: list[str]) -> pd.DataFrame:
    """Every fits/<key>.parquet of the run (schema.FITS); unreadable files are problems."""
    selector = pafs.FileSelector(folder, allow_not_found=True)
    infos = sorted(
        (i for i in fs.get_file_info(selector) if i.is_file and i.path.endswith(".parquet")),
        key=lambda i: i.path,
    )
    tables = []
    for info in infos:
        try:
            with fs.open_input_file(info.path) as handle:
                tables.append(pq.read_table(handle).select(schema.FIT_COLUMNS).cast(schema.FITS))
        except (pa.ArrowException, OSError, ValueError, KeyError) as err:
            name = "fits/" + info.path.rsplit("/", 1)[-1]
            problems.append(f"{name}: unreadable, skipped ({_short(err)})")
    if not tables:
        return empty_fits()
    return pa.concat_tables(tables).to_pandas()


def _read_embeddings(fs: pafs.FileSystem, folder: str, problems: list[str]) -> dict:
    """Task embeddings written by the trials (TextEmb under the pretrained encoder)."""
    out: dict[str, list[float]] = {}
    for info in sorted(_list_files(fs, folder, problems), key=lambda i: i.path):
        if not info.path.endswith(".json"):
            continue
        name = f"task_embeddings/{info.path.rsplit('/', 1)[-1]}"
        payload = _read_json(fs, info.path, problems)
        vector = (payload or {}).get("vector")
        if isinstance(vector, list) and vector and isinstance(payload.get("task"), str):
            try:
                values = [float(x) for x in vector]
            except (TypeError, ValueError):
                problems.append(f"{name}: vector is not numbers, ignored")
                continue
            if not all(map(math.isfinite, values)):
                problems.append(f"{name}: vector holds non-finite numbers, ignored")
                continue
            out[payload["task"]] = values
        elif payload is not None:
            problems.append(f"{name}: no vector, ignored")
    return out


def _read_json(fs: pafs.FileSystem, path: str, problems: list[str]) -> Any:
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    name = path.rsplit("/", 1)[-1]
    try:
        with fs.open_input_stream(path) as stream:
            payload = json.loads(stream.read(MAX_MANIFEST_BYTES))
    except (
        OSError,
        ValueError,
        RecursionError,
    ) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problems.append(f"{name}: unreadable, ignored ({_short(err)})")
        return None
    if not isinstance(payload, dict):
        problems.append(f"{name}: not a JSON object, ignored")
        return None
    return payload


def _clean_status(status: Any, problems: list[str]) -> dict[str, dict[str, str]]:
    clean: dict[str, dict[str, str]] = {"errored": {}, "skipped": {}}
    if status is None:
        return clean
    for part in clean:
        value = status.get(part, {})
        if isinstance(value, dict):
            clean[part] = {str(k): str(v) for k, v in value.items()}
        else:
            problems.append(f"status.json: {part!r} is not an object, ignored")
    return clean


def _read_results(
    fs: pafs.FileSystem, results_dir: str, problems: list[str], manifest: dict | None = None
) -> pd.DataFrame:
    # Writers leave `.tmp-*` files while renaming; only finished `.parquet` files are results.
    every = _list_files(fs, results_dir, problems)
    infos = sorted((i for i in every if i.path.endswith(".parquet")), key=lambda i: i.path)
    for info in every:
        name = info.path.rsplit("/", 1)[-1]
        if not name.endswith(".parquet") and not name.startswith(".tmp-"):
            problems.append(f"results/{name}: not a result file (foreign), ignored")
    tables = [_read_one(fs, info.path, problems) for info in infos]
    tables = [t for t in tables if t is not None and t.num_rows]
    if not tables:
        return empty_rows()
    # Converting once, not per file: per-file pandas conversion dominates on large sweeps.
    rows = pa.concat_tables(tables).to_pandas()
    for column, dtype in ROW_DTYPES.items():
        if dtype == "object":  # None for nulls, whatever string dtype pandas would pick
            rows[column] = rows[column].astype(object).where(rows[column].notna(), None)
    if manifest is not None:  # before duplicates: a stale row must not shadow a planned one
        rows = _planned_only(rows, manifest, problems)
    duplicated = rows.duplicated(list(ROW_IDENTITY), keep="first")
    why = (
        "duplicate rows (same trial, language, metric) ignored; first kept; files of trials {keys}"
    )
    return _ignored(rows, duplicated, why, problems)


def _read_one(fs: pafs.FileSystem, path: str, problems: list[str]) -> pa.Table | None:
    """One result file in the store schema, or None (and a problem) when it is unusable."""
    name = "results/" + path.rsplit("/", 1)[-1]
    try:
        with fs.open_input_file(path) as handle:
            table = pq.read_table(handle)
    except (pa.ArrowException, OSError, ValueError) as err:
        problems.append(f"{name}: unreadable (truncated or corrupt?), skipped ({_short(err)})")
        return None
    for column, value in OPTIONAL_COLUMNS.items():
        if column not in table.column_names:
            table = table.append_column(column, pa.array([value] * table.num_rows))
    missing = [c for c in ROW_DTYPES if c not in table.column_names]
    if missing:
        problems.append(f"{name}: missing columns {', '.join(missing)}, skipped")
        return None
    nulls = [
        c
        for c, dtype in ROW_DTYPES.items()
        if dtype in ("int64", "bool") and table.column(c).null_count
    ]
    if nulls:
        problems.append(f"{name}: nulls in {', '.join(nulls)}, skipped")
        return None
    try:
        table = table.select(list(ROW_DTYPES)).cast(SCHEMA)
    except (pa.ArrowException, ValueError, TypeError) as err:
        problems.append(f"{name}: columns of unexpected type, skipped ({_short(err)})")
        return None
    # a file holds the rows of the trial it is named after: a copy under another name (a forged
    # 0000000000000000.parquet sorting first) would otherwise shadow the genuine file
    stem = name.removeprefix("results/").removesuffix(".parquet")
    keys = set(table.column("trial_key").drop_null().to_pylist())
    if keys != {stem} and table.num_rows:
        problems.append(
            f"{name}: holds rows of trial(s) {_some(sorted(map(str, keys)), 3)}, not of "
            f"{stem!r} it is named after; skipped"
        )
        return None
    # a measured value is finite: inf or NaN would poison every mean and stall the model fits
    finite = pc.is_finite(table.column("value")).fill_null(False)
    bad = table.num_rows - pc.sum(finite).as_py() if table.num_rows else 0
    if bad:
        problems.append(f"{name}: {bad} rows with a missing or non-finite value ignored")
        table = table.filter(finite)
    return table


def trial_counts(run: Run) -> dict[str, int]:
    """Planned (non-pretrain), finished, errored, skipped and missing trials.

    A trial is finished when rows carry its key; missing means planned but neither finished nor
    listed in status.json (still running, never started, or its file was unreadable).
    """
    planned = {
        t["key"]
        for t in run.manifest.get("trials", [])
        if isinstance(t, dict) and t.get("kind") != "pretrain" and "key" in t
    }
    finished = set(run.rows["trial_key"].dropna().astype(str))
    errored = set(run.status["errored"]) - finished
    skipped = set(run.status["skipped"]) - finished - errored
    missing = planned - finished - errored - skipped
    return {
        "planned": len(planned),
        "finished": len(finished & planned) if planned else len(finished),
        "errored": len(errored),
        "skipped": len(skipped),
        "missing": len(missing),
        "unplanned": len(finished - planned) if planned else 0,
    }


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]

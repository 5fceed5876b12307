"""load_run: local paths and URIs, partial and damaged stores."""

import json

import numpy as np
import pytest

from analysis.results import ROW_DTYPES, load_run, trial_counts
from analysis.simulate import simulate_rows, write_run


@pytest.fixture
def run_dir(tmp_path):
    rows = simulate_rows(np.random.default_rng(0), 5.0, 3, 2, languages=("en", "ov50"))
    run = tmp_path / "run"
    write_run(str(run), rows)
    return run, rows


def test_reads_every_row_with_store_dtypes(run_dir):
    run, rows = run_dir
    loaded = load_run(str(run))
    assert len(loaded.rows) == len(rows)
    assert dict(loaded.rows.dtypes.astype(str)) == ROW_DTYPES
    assert loaded.problems == []
    assert loaded.status == {"errored": {}, "skipped": {}}  # status.json absent: empty
    assert loaded.manifest["name"] == "simulated"
    # intermediate rows have no target: None, not the string "None"
    assert loaded.rows.loc[loaded.rows["kind"] == "intermediate", "target_task"].isna().all()


def test_file_uri_goes_through_pyarrow_filesystem(run_dir):
    run, rows = run_dir
    loaded = load_run(run.as_uri())
    assert len(loaded.rows) == len(rows)


def test_truncated_parquet_is_skipped_and_reported(run_dir):
    run, rows = run_dir
    victim = sorted((run / "results").glob("*.parquet"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    loaded = load_run(str(run))
    lost = rows["trial_key"] == victim.stem
    assert len(loaded.rows) == len(rows) - lost.sum()
    assert len(loaded.problems) == 1
    assert victim.name in loaded.problems[0]
    assert trial_counts(loaded)["missing"] == 1


def test_file_without_store_columns_is_skipped(run_dir):
    run, rows = run_dir
    rows.drop(columns=["value"]).head(3).to_parquet(run / "results" / "odd.parquet")
    loaded = load_run(str(run))
    assert len(loaded.rows) == len(rows)
    assert any("odd.parquet" in p and "value" in p for p in loaded.problems)


def test_unfinished_temp_files_are_ignored(run_dir):
    run, _ = run_dir
    (run / "results" / ".tmp-abc").write_bytes(b"half")
    assert load_run(str(run)).problems == []


def test_bad_json_is_a_problem_not_a_crash(run_dir):
    run, _ = run_dir
    (run / "status.json").write_text("{not json")
    loaded = load_run(str(run))
    assert loaded.status == {"errored": {}, "skipped": {}}
    assert any("status.json" in p for p in loaded.problems)


def test_status_counts(run_dir):
    run, _ = run_dir
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["trials"] += [
        {"key": "late", "kind": "target"},
        {"key": "broken", "kind": "target"},
        {"key": "blocked", "kind": "target"},
    ]
    (run / "manifest.json").write_text(json.dumps(manifest))
    status = {"errored": {"broken": "CUDA OOM"}, "skipped": {"blocked": "parent errored"}}
    (run / "status.json").write_text(json.dumps(status))
    counts = trial_counts(load_run(str(run)))
    planned = len(manifest["trials"]) - 1  # the pretrain trial writes no rows
    assert counts == {
        "planned": planned,
        "finished": planned - 3,
        "errored": 1,
        "skipped": 1,
        "missing": 1,
        "unplanned": 0,
    }


def test_not_a_run_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_run(str(tmp_path / "nothing"))

"""Damaged stores and failing storage: say what is wrong, keep the rest, write nothing partial."""

import errno

import numpy as np
import pandas as pd
import pytest

from analysis.report import write_report
from analysis.results import load_run, trial_counts
from analysis.simulate import simulate_rows, write_run
from sweep.plan import TrialSpec
from sweep.store import ResultsStore
from tests.conftest import COUNTS, result_row


@pytest.fixture
def damaged_run(tmp_path):
    rows = simulate_rows(np.random.default_rng(0), 2.0, 4, 2, ("nli",), ("en", "ov80"))
    missing = {
        "key": "never-ran",
        "kind": "target",
        "intermediate": "task00",
        "seed": 9,
        "target_task": "nli",
        "parent": "pretrain",
    }
    files = write_run(str(tmp_path), rows, extra_trials=[missing])
    truncated = files[0]
    with open(truncated, "r+b") as f:  # noqa: PTH123 - truncate in place
        f.truncate(100)
    (tmp_path / "results" / "notes.txt").write_text("not a result")
    pd.DataFrame({"foo": [1]}).to_parquet(tmp_path / "results" / "foreign.parquet")
    COUNTS["damaged result files tried"] += 3
    return tmp_path, rows, truncated


def test_report_names_each_damaged_file_and_reports_the_rest(damaged_run):
    run, rows, truncated = damaged_run
    loaded = load_run(str(run))
    problems = " | ".join(loaded.problems)
    assert truncated.rsplit("/", 1)[-1] in problems
    assert "foreign.parquet" in problems
    assert "notes.txt" in problems
    bad_key = truncated.rsplit("/", 1)[-1].removesuffix(".parquet")
    assert len(loaded.rows) == len(rows[rows.trial_key != bad_key])  # everything else is kept
    assert trial_counts(loaded)["missing"] >= 2  # never-ran, and the truncated one
    written = write_report(str(run))
    md = (run / "report.md").read_text()
    assert "foreign.parquet" in md and "notes.txt" in md
    assert "report.html" in written


class FillsUp:
    """A filesystem whose disk fills up in the middle of its second file."""

    def __init__(self, fs):
        self.fs, self.opened = fs, 0

    def __getattr__(self, name):
        return getattr(self.fs, name)

    def open_output_stream(self, path, *args, **kwargs):
        self.opened += 1
        stream = self.fs.open_output_stream(path, *args, **kwargs)
        if self.opened == 2:
            return Failing(stream, path)
        return stream


class Failing:
    def __init__(self, stream, path):
        self.stream, self.path = stream, path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.close()

    def write(self, data):
        self.stream.write(data[: len(data) // 2])  # half of it lands, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", self.path)


def test_full_disk_leaves_no_partial_rows(tmp_path):
    store = ResultsStore(str(tmp_path), "run")
    store.fs = FillsUp(store.fs)
    spec = TrialSpec(
        key="k1", kind="target", intermediate="none", seed=0, target_task="nli", parent="p"
    )
    rows = pd.DataFrame([result_row()])
    with pytest.raises(OSError, match="No space left on device"):
        store.write_rows(spec, rows)
    COUNTS["storage failures tried"] += 1
    assert not store.is_done(spec)  # no DONE: the trial is unfinished and will rerun
    assert not (tmp_path / "run" / "results" / "k1.parquet").exists()
    assert not list(tmp_path.rglob(".tmp-*"))  # the half-written temp file is gone


def test_unwritable_storage_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    store = ResultsStore(str(blocker / "root"), "run")
    with pytest.raises(OSError):
        store.write_json("manifest.json", {})
    COUNTS["storage failures tried"] += 1

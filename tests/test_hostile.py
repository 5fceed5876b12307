"""Hostile and careless input (issue 15): nothing written outside the store, no stale or forged
rows in a report, one line instead of a traceback, one sweep per run at a time.

The attacks themselves are in tests/hostile_cases.py; benchmarks/hostile_input.py runs the same
ones as subprocesses against any checkout (the before/after table in RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from analysis.report import ReportNotWritten, install_report, write_report
from analysis.results import load_run
from sweep.cli import app
from sweep.config import ConfigError, load_config, parse_config
from sweep.lease import ConfigChanged, RunBusy, RunLease, changed_keys, check_config_unchanged
from sweep.plan import TrialSpec
from sweep.schema import open_store
from sweep.store import ResultsStore
from tests.conftest import COUNTS, ROOT
from tests.hostile_cases import CASES, TINY, report_run, status_run
from trainers.paths import check_name, check_storage, store_path

# gs:// offline waits out its bounded retries (15 s): shown by benchmarks/hostile_input.py --heavy
IN_PROCESS = [c for c in CASES if not (c.as_nobody or c.mid_run) and "gs://" not in c.name]
MID_RUN = [c for c in CASES if c.mid_run]


def invoke(args: list[str]) -> tuple[int, list[str], float]:
    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code, lines, time.perf_counter() - started


@pytest.mark.parametrize("case", IN_PROCESS, ids=[c.name for c in IN_PROCESS])
def test_attack(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = case.build(tmp_path)
    code, lines, seconds = invoke(args)
    COUNTS["hostile inputs tried"] += 1
    assert not (tmp_path / "escaped").exists() and not Path("/escaped").exists()
    if case.refused:
        assert code == 2, lines[-3:]
        assert len(lines) == 1 and lines[0].startswith("error: "), lines[:3]
        assert len(lines[0]) < 600  # a short excerpt of a bad value, never the value
        assert "Traceback" not in lines[0]
        COUNTS["hostile inputs refused in one line"] += 1
    else:
        assert code == 0, lines[-3:]
        assert not any("Traceback" in line for line in lines)
        COUNTS["damaged inputs served around"] += 1
    assert seconds < 60


@pytest.mark.slow
@pytest.mark.parametrize("case", MID_RUN, ids=[c.name for c in MID_RUN])
def test_storage_failing_mid_run_gives_one_summary_line(case, tmp_path, monkeypatch):
    """A real sweep whose store turns read-only, or whose 1 MB disk fills, while it runs."""
    if os.geteuid() != 0:
        pytest.skip("the read-only remount and the tmpfs need root")
    monkeypatch.chdir(tmp_path)
    try:
        code, lines, _ = invoke(case.build(tmp_path))
    finally:
        if (tmp_path / ".kill").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int((tmp_path / ".kill").read_text()), signal.SIGKILL)
        for mount in (tmp_path / ".umount").read_text().split():
            subprocess.run(["umount", "-l", mount], check=False)
    # Ray's log of each failed trial (with the worker's traceback) and Tune's status table share
    # the output, as in any run where trials fail; the driver's own is one summary line (stderr;
    # CliRunner interleaves the streams, so its place among Tune's lines varies), no traceback
    # Two endings, by timing: the driver's own writes fail (one "stopped" line naming the
    # storage), or only trials' writes do and the sweep ends with its summary and each errored
    # trial's reason. Either way exit code 1 and no driver traceback.
    errors = [line for line in lines if line.startswith("error:")]
    summary = [line for line in lines if line.startswith("sweep tiny: ")]
    assert code == 1 and len(errors) + len(summary) == 1, lines[-3:]
    if errors:
        assert errors[0].startswith("error: sweep tiny stopped after ")
        assert "is not writable" in errors[0] and "rerun `itx run" in errors[0]
    else:
        assert re.search(r", [1-9][0-9]* errored", summary[0]), summary[0]
        causes = ("Read-only file system", "No space left on device")
        assert any(cause in line for line in lines for cause in causes)
    assert not any("Traceback" in line and "─" in line for line in lines)  # typer's, the driver's
    COUNTS["storage failures tried"] += 1


def test_report_from_a_read_only_run_folder():
    """Root ignores file modes: as root, the folder is made read-only for `nobody`, who runs it
    (in a folder of its own: pytest's tmp_path is private to its user)."""
    tmp_path = Path(tempfile.mkdtemp(prefix="itx-read-only-"))
    tmp_path.chmod(0o755)
    run = report_run(tmp_path)
    for path in [run, *run.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv cannot drop to a user that file modes bind")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLCONFIGDIR": str(out / ".mpl")}
    cli = "import sys; from sweep.cli import app; sys.exit(app())"

    def itx(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*prefix, sys.executable, "-c", cli, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    if prefix:  # the dropped user must be able to read this checkout (a clone under a 0700 folder
        # such as `mktemp -d` is not): otherwise the test would show a permission error, not ours
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", "import sweep.cli"],
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )
        if probe.returncode != 0:
            pytest.skip(f"uid 65534 cannot import this checkout ({ROOT}): its folders' modes")
    refused = itx("report", str(run))
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out DIR" in lines[0] and "only read" in lines[0], lines
    served = itx("report", str(run), "--out", str(out / "report"))
    assert served.returncode == 0, served.stderr[-500:]
    assert (out / "report" / "report.md").exists() and not (run / "report.md").exists()
    COUNTS["hostile inputs tried"] += 1
    subprocess.run(["chmod", "-R", "u+w", str(tmp_path)], check=True)
    shutil.rmtree(tmp_path)


# ---- one name rule, one path builder -------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["..", ".", "../x", "a/b", "a..b", ".hidden", "", "x" * 65, "a\x00b", "caf\xe9", 3]
)
def test_names_that_could_leave_the_store_are_refused(name):
    with pytest.raises(ValueError, match="is not a valid name"):
        check_name(name)
    COUNTS["path names refused"] += 1


@pytest.mark.parametrize("part", ["..", "../x", "/etc", "a//b", "a/./b", "x\x00", "", "a\\b"])
def test_store_path_refuses_anything_outside_the_root(part):
    with pytest.raises(ValueError, match="would leave the store root"):
        store_path("/store", part)
    assert store_path("/store", "task_embeddings/nli.json") == "/store/task_embeddings/nli.json"
    COUNTS["path names refused"] += 1


def test_every_config_name_that_reaches_a_path_follows_the_rule():
    escape = "../../x"
    cases = {
        "name": {"name": escape},
        "intermediates": {"intermediates": [escape]},
        "targets": {"targets": [escape]},
        "mixtures": {"mixtures": {escape: {"tasks": ["topic_easy", "topic_mid"]}}},
        "tasks": {"tasks": {escape: {}}},
        "data.sources": {"data": {**TINY["data"], "sources": {escape: {}}}},
    }
    for key, change in cases.items():
        # data.sources: the registry of sources refuses it first, as an unknown source
        refusal = "unknown source" if key == "data.sources" else "is not a valid name"
        with pytest.raises(ConfigError, match=rf"^t.yaml: {key}: .*'\.\./\.\./x'") as err:
            parse_config({**TINY, **change}, "t.yaml")
        assert refusal in str(err.value)
        COUNTS["path names refused"] += 1


def test_a_forged_state_pointer_cannot_leave_the_root(tmp_path):
    store = ResultsStore(str(tmp_path / "store"), "run")
    spec = TrialSpec(key="k1", kind="target", intermediate="none", seed=0, target_task="nli")
    store.write_bytes(f"{store.state_root(spec)}/LATEST", b"../../../../etc")
    assert store.pull_state(spec, tmp_path / "local") == 0  # refused: trains from the start
    assert not list((tmp_path / "local").iterdir())


def test_a_forged_best_pointer_discards_the_state_on_an_object_store(tmp_path, caplog):
    """A version's BEST names the best weights to download; one naming a path is refused, the
    state discarded (counted), the trial trains from the start: nothing outside is read."""
    from sweep import trial
    from tests.sweep.test_store import moto_s3, save

    endpoints = moto_s3()
    root = next(endpoints)
    try:
        store = ResultsStore(f"{root}/forged-best", "run")
        spec = TrialSpec(key="k1", kind="target", intermediate="none", seed=0, target_task="nli")
        with trial.TrainingState(spec, store, every=0, final_push=True) as state:
            save(state.path, step=4, weights=b"w4", best=b"b4")
            state.on_save(state.path)
        base = store.state_root(spec)
        assert store.read_bytes(f"{base}/v00000004/BEST") == b"best-00000004.safetensors"
        store.write_bytes(f"{base}/v00000004/BEST", b"../../../forged-best/run/manifest.json")
        discarded = trial.DISCARDED_STATES[0]
        with caplog.at_level(logging.WARNING), trial.TrainingState(spec, store, every=0) as again:
            assert again.resumed_from == 0 and not list(again.path.iterdir())
        assert trial.DISCARDED_STATES[0] == discarded + 1
        assert "BEST names '../../../forged-best" in caplog.text
        assert "discarded, training from the start" in caplog.text
    finally:
        next(endpoints, None)
    COUNTS["path names refused"] += 1


# ---- storage URIs --------------------------------------------------------------------------------
def test_gcs_retries_are_bounded_unless_the_uri_sets_them():
    fs, base = open_store("gs://bucket/root")
    assert base == "bucket/root" and type(fs).__name__ == "GcsFileSystem"
    with pytest.raises(ValueError, match="credentials in the URI"):
        check_storage("s3://AKIA:secret@bucket/x")


# ---- YAML limits ---------------------------------------------------------------------------------
def test_yaml_limits_refuse_bombs_but_keep_anchors_and_merge_keys(tmp_path):
    ok = tmp_path / "ok.yaml"
    raw = yaml.safe_dump({k: v for k, v in TINY.items() if k != "train"}, sort_keys=False)
    ok.write_text(
        "base: &base {epochs: 1, batch_size: 16}\n" + raw + "train: {<<: *base, lr: 0.002}\n"
    )
    with pytest.raises(ConfigError, match="base: unknown key"):  # anchors parse; the key is foreign
        load_config(ok)
    # two references per level, 20 levels: 40 aliases, but 2**20 values once expanded
    levels = ["l0: &l0 [1, 2]"] + [f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, 21)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\n" + yaml.safe_dump(TINY))
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than 100,000 values"):
        load_config(bomb)
    assert time.perf_counter() - started < 2
    many = tmp_path / "many.yaml"
    many.write_text("x: &x 1\nl: [" + ", ".join(["*x"] * 101) + "]\n")
    with pytest.raises(ConfigError, match="more than 100 aliases"):
        load_config(many)
    COUNTS["hostile inputs tried"] += 3


def test_an_error_quotes_a_short_excerpt_of_a_huge_value():
    with pytest.raises(ConfigError) as err:
        parse_config({**TINY, "seeds": list(range(-1, 300_000))}, "t.yaml")
    assert len(str(err.value)) < 300 and "(300001 chars)" not in str(err.value)
    assert str(err.value).startswith("t.yaml: seeds.0: Input should be greater than or equal to 0")


def test_duplicate_keys_name_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    text = yaml.safe_dump(TINY, sort_keys=False)
    first = text.splitlines().index("train:") + 1
    path.write_text(text + "train: {epochs: 60}\n")
    second = len(text.splitlines()) + 1
    with pytest.raises(ConfigError, match=rf"duplicate key 'train' \(lines {first} and {second}\)"):
        load_config(path)


# ---- one config per run name, one sweep per run --------------------------------------------------
def test_a_changed_config_under_the_same_name_is_refused_naming_the_keys(tmp_path):
    run = status_run(tmp_path)
    store = ResultsStore(str(run.parent), run.name)
    manifest = json.loads((run / "manifest.json").read_text())
    config = manifest["config"]
    check_config_unchanged(config, store)  # the same config: fine
    moved = {**config, "resources": {**config["resources"], "max_concurrent_trials": 9}}
    check_config_unchanged({**moved, "storage": "elsewhere"}, store)  # scheduling only: fine
    changed = {**config, "train": {**config["train"], "lr": 0.003}, "seeds": [0, 1]}
    with pytest.raises(ConfigChanged, match=r"seeds \[0\] -> \[0, 1\] and 1 more \(train.lr\)"):
        check_config_unchanged(changed, store)
    # a key one itx version has and another lacks is not a change of the study
    assert changed_keys({"train": {"lr": 1}}, {"train": {"lr": 1, "accumulate": 2}}) == []


def test_a_second_sweep_on_a_run_refuses_and_a_stale_lease_is_taken_over(tmp_path, caplog):
    store = ResultsStore(str(tmp_path), "run")
    first = RunLease(store, settle=0).acquire()
    with pytest.raises(RunBusy, match=r"^run '.*/run' is in use by another itx run \("):
        RunLease(ResultsStore(str(tmp_path), "run"), settle=0).acquire()
    first.release()
    assert not (tmp_path / "run" / "lease.json").exists()
    # a lease whose heartbeat stopped (its driver was killed) expires and is taken over
    dead = RunLease(store, ttl=0.01, settle=0).acquire()
    dead._stop.set()  # the driver dies: no more heartbeats, nothing released
    time.sleep(0.05)
    with caplog.at_level(logging.WARNING):
        taker = RunLease(store, settle=0).acquire()
    assert taker.took_over and "heartbeat expired" in taker.took_over
    assert "taking over the lease of" in caplog.text
    taker.release()
    COUNTS["concurrent sweeps refused"] += 1


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    store = ResultsStore(str(tmp_path), "run")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    lease = RunLease(store, settle=0)
    lease.pid = child.pid  # a driver of this host that no longer exists
    lease.store.write_bytes(lease.path, lease._payload())
    taker = RunLease(store, settle=0).acquire()
    assert taker.took_over and "no such process on this host" in taker.took_over
    taker.release()


def test_the_lease_works_on_an_object_store():
    from tests.sweep.test_store import moto_s3

    endpoints = moto_s3()
    root = next(endpoints)
    try:
        store = ResultsStore(f"{root}/leases", "run")
        held = RunLease(store, settle=0.2).acquire()
        with pytest.raises(RunBusy):
            RunLease(ResultsStore(f"{root}/leases", "run"), settle=0.2).acquire()
        held.release()
        assert not store.exists(store.path("lease.json"))
    finally:
        next(endpoints, None)
    COUNTS["concurrent sweeps refused"] += 1


def test_a_mid_run_storage_failure_is_one_line_with_exit_1_and_frees_the_run(tmp_path, monkeypatch):
    """The driver's own writes (Tune state, status.json) fail once the disk fills or the mount
    turns read-only; trials' failures are counted by Tune. What the user sees is one line."""
    import sweep.runner

    def fails(exp, address=None):
        raise OSError(errno.EROFS, "Read-only file system", f"{exp.storage}/tiny/status.json")

    monkeypatch.setattr(sweep.runner, "run_sweep", fails)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "storage": str(tmp_path / "runs")}))
    code, lines, _ = invoke(["run", str(config)])
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("error: sweep tiny stopped after ") and "Read-only" in lines[0]
    assert not (tmp_path / "runs" / "tiny" / "lease.json").exists()  # a rerun may start at once
    COUNTS["storage failures tried"] += 1


# ---- the report: exactly the manifest's trials, finite values, written atomically ----------------
@pytest.fixture
def sim_run(tmp_path):
    return report_run(tmp_path)


def test_the_report_ignores_stale_and_forged_files_and_names_them(sim_run):
    genuine = load_run(str(sim_run))
    files = sorted((sim_run / "results").glob("*.parquet"))
    stale = pd.read_parquet(files[-1]).assign(trial_key="0123456789abcdef", value=99.0)
    stale.to_parquet(sim_run / "results" / "0123456789abcdef.parquet", index=False)
    forged = pd.read_parquet(files[-1]).assign(value=lambda d: d["value"] + 50)
    forged.to_parquet(sim_run / "results" / "0000000000000000.parquet", index=False)
    loaded = load_run(str(sim_run))
    problems = " | ".join(loaded.problems)
    assert "trials not in the manifest" in problems and "0123456789abcdef" in problems
    assert "0000000000000000.parquet: holds rows of trial(s)" in problems
    pd.testing.assert_frame_equal(loaded.rows, genuine.rows)  # exactly the genuine rows
    COUNTS["damaged result files tried"] += 2


def test_non_finite_values_are_dropped_at_load_and_the_report_finishes(sim_run):
    path = sorted((sim_run / "results").glob("*.parquet"))[0]
    rows = pd.read_parquet(path)
    rows.loc[0, "value"] = np.inf
    rows.loc[1, "value"] = np.nan
    rows.to_parquet(path, index=False)
    loaded = load_run(str(sim_run))
    assert f"results/{path.name}: 2 rows with a missing or non-finite value ignored" in (
        loaded.problems
    )
    assert np.isfinite(loaded.rows["value"]).all()
    started = time.perf_counter()
    write_report(str(sim_run))
    assert time.perf_counter() - started < 60  # was a hang of over 120 s in the optimizer
    COUNTS["damaged result files tried"] += 1


class FullAfter:
    """A filesystem whose disk fills at the `n`th output stream."""

    def __init__(self, fs, n):
        self.fs, self.n, self.opened = fs, n, 0

    def __getattr__(self, name):
        return getattr(self.fs, name)

    def open_output_stream(self, path, *args, **kwargs):
        self.opened += 1
        if self.opened >= self.n:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return self.fs.open_output_stream(path, *args, **kwargs)


def test_a_full_disk_leaves_the_old_report_whole(sim_run):
    import pyarrow.fs as pafs

    write_report(str(sim_run))
    before = {p: p.read_bytes() for p in sim_run.rglob("*") if p.is_file()}
    files = {"report.md": b"new", "report.html": b"new", "tables/gains.csv": b"new"}
    with pytest.raises(ReportNotWritten, match=r"the disk is full.*the old report is untouched"):
        install_report(FullAfter(pafs.LocalFileSystem(), 3), str(sim_run), files)
    after = {p: p.read_bytes() for p in sim_run.rglob("*") if p.is_file()}
    assert after == before and not list(sim_run.glob(".report-*"))
    # a folder where report.html belongs: refused before anything is replaced
    (sim_run / "report.html").unlink()
    (sim_run / "report.html").mkdir()
    md = (sim_run / "report.md").read_bytes()
    with pytest.raises(ReportNotWritten, match=r"report\.html is a folder"):
        install_report(pafs.LocalFileSystem(), str(sim_run), files)
    assert (sim_run / "report.md").read_bytes() == md
    # and a whole swap replaces every part, stale figures and tables included
    (sim_run / "report.html").rmdir()
    (sim_run / "figures" / "stale.png").write_bytes(b"old")
    install_report(pafs.LocalFileSystem(), str(sim_run), files)
    assert (sim_run / "report.md").read_bytes() == b"new"
    assert not (sim_run / "figures").exists() and not list(sim_run.glob(".report-*"))
    COUNTS["storage failures tried"] += 2


class MoveFailsAfter:
    """A filesystem whose `n`th rename fails (a mount lost in the middle of the swap)."""

    def __init__(self, fs, n):
        self.fs, self.n, self.moves = fs, n, 0

    def __getattr__(self, name):
        return getattr(self.fs, name)

    def move(self, source, dest):
        self.moves += 1
        if self.moves == self.n:
            raise OSError(errno.EIO, "Input/output error", source)
        return self.fs.move(source, dest)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_a_failure_in_the_middle_of_the_swap_restores_the_old_report(tmp_path, n):
    import pyarrow.fs as pafs

    local = pafs.LocalFileSystem()
    old = {"report.md": b"old", "report.html": b"old", "tables/gains.csv": b"old"}
    install_report(local, str(tmp_path), old)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    new = {**{k: b"new" for k in old}, "figures/gain_heatmap.png": b"new"}
    with pytest.raises(ReportNotWritten, match="the old one was restored"):
        install_report(MoveFailsAfter(local, n), str(tmp_path), new)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before and not list(tmp_path.glob(".report-*"))
    COUNTS["storage failures tried"] += 1


# ---- damaged saves and markers -------------------------------------------------------------------
def test_done_without_rows_is_not_done(tmp_path):
    store = ResultsStore(str(tmp_path), "run")
    spec = TrialSpec(key="k1", kind="target", intermediate="none", seed=0, target_task="nli")
    store.mark_done(spec)
    assert not store.is_done(spec)  # reruns instead of failing on the missing rows
    COUNTS["damaged markers tried"] += 1


class Planted:
    """A pickle that would create a file if anything unpickled it without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("damage", ["malicious pickle", "truncated weights", "bad progress"])
def test_a_corrupt_training_state_is_discarded_and_training_restarts(
    damage, tmp_path, tiny_encoder, caplog
):
    import pickle

    from sweep import trial
    from trainers.synthetic import task_data
    from trainers.tasks import SplitSizes
    from trainers.world import World

    exp = parse_config({**TINY, "storage": str(tmp_path)})
    task = exp.task("nli")
    data = task_data(World(exp.world), task, SplitSizes(32, 16, 16), ("en", "ov80"))
    state = tmp_path / "state-dir"
    run = trial._fine_tune_of(exp, task, tiny_encoder)
    trial._train(run, data, seed=0, state_dir=state)
    assert (state / "state" / "model.safetensors").exists()
    marker = tmp_path / "unpickled"
    if damage == "malicious pickle":
        for path in (state / "state").glob("optimizer*.bin"):
            path.write_bytes(pickle.dumps(Planted(str(marker))))
    elif damage == "truncated weights":
        weights = state / "state" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        (state / "state" / "progress.json").write_text("{not json")
    discarded = trial.DISCARDED_STATES[0]
    with caplog.at_level(logging.WARNING):
        outcome = trial._train(run, data, seed=0, state_dir=state)
    assert trial.DISCARDED_STATES[0] == discarded + 1
    assert "discarded, training from the start" in caplog.text
    assert "weights_only=False" not in caplog.text  # never suggested
    assert not marker.exists()  # the planted pickle never ran
    assert outcome.steps > 0 and (state / "state" / "model.safetensors").exists()
    COUNTS["corrupt training states discarded"] += 1

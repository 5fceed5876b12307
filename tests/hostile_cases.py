"""The attacks of issue 15 as data: each builds its files in a folder and returns the `itx`
arguments that meet them. Used by tests/test_hostile.py (in-process, asserting one line and
exit code 2) and benchmarks/hostile_input.py (subprocesses against any checkout: the
before/after table in RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]

# A seconds-scale sweep: what `itx run` cases would train if a check let them through.
TINY = {
    "name": "tiny",
    "storage": "runs",
    "world": {"sentences_per_language": 300},
    "model": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_length": 48,
        "vocab_size": 600,
    },
    "pretrain": {"steps": 20, "batch_size": 16},
    "intermediates": ["topic_easy"],
    "targets": ["nli"],
    "languages": ["en", "ov80"],
    "seeds": [0],
    "data": {"train": 64, "dev": 32, "test": 32},
    "train": {"epochs": 1, "batch_size": 16},
    "controls": {"scratch": False},
    "difficulty": {"pvi": False, "similarity": False},
    "resources": {"cpu": 1, "pretrain_cpu": 1, "max_concurrent_trials": 1, "max_failures": 0},
}


@dataclass(frozen=True)
class Case:
    name: str
    item: int  # the numbered finding of issue 15
    build: Callable[[Path], list[str]]  # writes files under the folder, returns itx arguments
    heavy: bool = False  # may start Ray in a checkout without the check (benchmark only)
    as_nobody: bool = False  # needs a user that root's permissions do not override
    refused: bool = True  # one line, exit 2; else served, naming what was ignored (exit 0)
    mid_run: bool = False  # storage fails after the sweep started: one summary line, exit 1


def _config(tmp: Path, name: str = "c.yaml", **changes: object) -> Path:
    raw = json.loads(json.dumps(TINY))
    raw["storage"] = str(tmp / "runs")
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _text(tmp: Path, text: str, name: str = "c.yaml") -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def _bomb(levels: int, where: str) -> str:
    """A billion-laughs document: level i lists level i-1 nine times (about 1 KB of YAML)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    base = yaml.safe_dump(TINY, sort_keys=False)
    if where == "seeds":  # anchors as top-level keys: the first error is seeds.0, quoted
        return "\n".join(lines) + "\n" + base.replace("seeds:\n- 0\n", f"seeds: *a{levels}\n")
    # data.sources takes any mapping per source: the whole expansion is kept, then hashed
    body = "".join(f"      {line}\n" for line in lines)
    return base.replace("data:\n", f"data:\n  sources:\n    mnli:\n{body}", 1)


# ---- runs for status and report --------------------------------------------------------------
def status_run(tmp: Path) -> Path:
    """A run folder as `itx run` leaves it before training: manifest from a real plan."""
    from sweep.config import parse_config
    from sweep.plan import build_plan
    from sweep.runner import write_manifest
    from sweep.store import ResultsStore

    exp = parse_config({**TINY, "storage": str(tmp / "runs")})
    store = ResultsStore(exp.storage, exp.name)
    write_manifest(exp, store, build_plan(exp))
    return Path(store.run)


def report_run(tmp: Path) -> Path:
    """A finished run with simulated rows (4 intermediates x 2 seeds, nli in en and ov80)."""
    from analysis.simulate import simulate_rows, write_run

    run = tmp / "runs" / "sim"
    rows = simulate_rows(np.random.default_rng(0), 2.0, 4, 2, ("nli",), ("en", "ov80"))
    write_run(str(run), rows, status={"errored": {}, "skipped": {}})
    return run


def _edit_manifest(run: Path, change: Callable[[dict], object], whole: bool = False) -> None:
    """Change the manifest in place (`change` mutates it), or replace it by what `change`
    returns (`whole`)."""
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    result = change(manifest)
    path.write_text(json.dumps(result if whole else manifest))


def _status(edit: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        run = status_run(tmp)
        edit(run)
        return ["status", str(run)]

    return build


def _report(edit: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        run = report_run(tmp)
        edit(run)
        return ["report", str(run)]

    return build


def _record(run: Path, payload: object) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    key = manifest["trials"][1]["key"]
    (run / "trials").mkdir(exist_ok=True)
    (run / "trials" / f"{key}.json").write_text(json.dumps(payload))


def _inf_value(run: Path) -> None:
    """One target score of an intermediate is inf: its gain, and the mixed model's input, too."""
    path = next(
        p
        for p in sorted((run / "results").glob("*.parquet"))
        if pd.read_parquet(p)[["kind", "intermediate"]].iloc[0].tolist()[0] == "target"
        and pd.read_parquet(p)["intermediate"].iloc[0] not in ("none", "scratch")
    )
    rows = pd.read_parquet(path)
    rows.loc[0, "value"] = float("inf")
    rows.to_parquet(path, index=False)


def _forged(run: Path) -> None:
    """A copy of a genuine file under a name that sorts first, every value shifted by +0.5."""
    genuine = sorted((run / "results").glob("*.parquet"))
    target = next(p for p in genuine if pd.read_parquet(p)["kind"].iloc[0] == "target")
    rows = pd.read_parquet(target)
    rows["value"] += 0.5
    rows.to_parquet(run / "results" / "0000000000000000.parquet", index=False)


def _bad_name(run: Path) -> None:
    (run / "results" / os.fsdecode(b"bad\xff.parquet")).write_bytes(b"x")


def _embedding(run: Path) -> None:
    (run / "task_embeddings").mkdir(exist_ok=True)
    payload = {"task": "nli", "n_texts": 2, "vector": ["a", "b"]}
    (run / "task_embeddings" / "nli.json").write_text(json.dumps(payload))


def _results_file(run: Path) -> None:
    shutil.rmtree(run / "results")
    (run / "results").write_text("not a folder")


def _read_only(run: Path) -> None:
    for path in [run, *run.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def _leased(tmp: Path) -> list[str]:
    """Another live `itx run` (pid 1 on this host) holds the run's lease."""
    config = _config(tmp)
    run = tmp / "runs" / "tiny"
    run.mkdir(parents=True)
    lease = {
        "owner": "other",
        "host": socket.gethostname(),
        "pid": 1,
        "started": "2026-01-01T00:00:00+00:00",
        "heartbeat": "2099-01-01T00:00:00+00:00",
        "expires": "2099-01-01T00:02:00+00:00",
    }
    (run / "lease.json").write_text(json.dumps(lease))
    return ["run", str(config)]


def _changed_config(tmp: Path) -> list[str]:
    """The run folder holds a sweep of train.lr 0.001; the config now says 0.003."""
    run = status_run(tmp)
    _edit_manifest(run, lambda m: m["config"]["train"].update(lr=0.001))
    return ["run", str(_config(tmp, train__lr=0.003))]


def _mounted(tmp: Path, *mount: str) -> Path:
    """`tmp/runs` as a mount (root only); the harness unmounts what `.umount` lists."""
    import subprocess

    runs = tmp / "runs"
    runs.mkdir()
    subprocess.run(["mount", *mount, str(runs)], check=True)
    with (tmp / ".umount").open("a") as listing:
        listing.write(f"{runs}\n")
    return runs


def _read_only_mid_run(tmp: Path) -> list[str]:
    """`itx run` on a store that turns read-only once its first trial is DONE (a bind mount,
    remounted): mid-run however fast the machine (a fixed delay let a fast sweep finish first)."""
    import subprocess

    (tmp / "store").mkdir()
    runs = _mounted(tmp, "--bind", str(tmp / "store"))
    first_done = f"find {runs} -name DONE -path '*/artifacts/*' | grep -q ."
    timer = subprocess.Popen(
        ["sh", "-c", f"until {first_done}; do sleep 0.2; done; mount -o remount,ro,bind {runs}"],
        start_new_session=True,
    )
    (tmp / ".kill").write_text(str(timer.pid))
    return ["run", str(_config(tmp))]


def _full_disk(tmp: Path) -> list[str]:
    """`itx run` on a 1 MB file system: the disk fills during the sweep."""
    _mounted(tmp, "-t", "tmpfs", "-o", "size=1m", "tmpfs")
    return ["run", str(_config(tmp))]


def _fifo(tmp: Path) -> list[str]:
    os.mkfifo(tmp / "fifo.yaml")
    return ["plan", str(tmp / "fifo.yaml")]


def _storage(uri: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", str(_config(tmp)), "--storage", uri]


CASES: tuple[Case, ...] = (
    Case(
        "mixture named ../../x passes plan",
        1,
        lambda t: [
            "plan",
            str(
                _config(
                    t,
                    mixtures={"../../../../escaped/X": {"tasks": ["topic_easy", "topic_mid"]}},
                    intermediates=["topic_easy", "../../../../escaped/X"],
                )
            ),
        ],
    ),
    Case("config path is a folder", 3, lambda t: ["plan", str(t)]),
    Case(
        "Latin-1 config",
        3,
        lambda t: (
            (t / "c.yaml").write_bytes(
                yaml.safe_dump(TINY, sort_keys=False)
                .replace("- topic_easy", "- caf\xe9")
                .encode("latin-1")
            ),
            ["plan", str(t / "c.yaml")],
        )[1],
    ),
    Case(
        "UTF-16 config",
        3,
        lambda t: (
            (t / "c.yaml").write_bytes(yaml.safe_dump(TINY).encode("utf-16")),
            ["plan", str(t / "c.yaml")],
        )[1],
    ),
    Case(
        "binary config",
        3,
        lambda t: ((t / "c.bin").write_bytes(bytes(range(256)) * 8), ["plan", str(t / "c.bin")])[1],
    ),
    Case(
        "500-level nested list",
        3,
        lambda t: [
            "plan",
            str(_text(t, yaml.safe_dump(TINY) + "extra: " + "[" * 500 + "]" * 500 + "\n")),
        ],
    ),
    Case("config is a FIFO", 3, _fifo),
    Case("config is /dev/urandom", 3, lambda t: ["plan", "/dev/urandom"]),
    Case("storage ftp://", 3, _storage("ftp://x/y")),
    Case("storage http://", 3, _storage("http://x/y")),
    Case("storage foo://", 3, _storage("foo://x/y")),
    Case("storage hdfs://", 3, _storage("hdfs://x/y")),
    Case("storage s3:// without bucket", 3, _storage("s3:///x")),
    Case("storage gs://bucket offline", 3, _storage("gs://itx-no-such-bucket/x"), heavy=True),
    Case(
        "storage with a NUL byte",
        3,
        lambda t: [
            "run",
            str(
                _text(
                    t,
                    yaml.safe_dump({k: v for k, v in TINY.items() if k != "storage"})
                    + 'storage: "a\\0b"\n',
                )
            ),
        ],
    ),
    Case("storage mock:///", 3, _storage("mock:///"), heavy=True),
    Case("status ftp://x/y", 3, lambda t: ["status", "ftp://x/y"]),
    Case("report ftp://x/y", 3, lambda t: ["report", "ftp://x/y"]),
    Case(
        "alias bomb in data.sources (6 levels)",
        3,
        lambda t: ["plan", str(_text(t, _bomb(6, "sources")))],
    ),
    Case("alias bomb in seeds (6 levels)", 3, lambda t: ["plan", str(_text(t, _bomb(6, "seeds")))]),
    Case(
        "20 MB config",
        3,
        lambda t: [
            "plan",
            str(_text(t, yaml.safe_dump(TINY).replace("name: tiny", "name: " + "x" * 20_000_000))),
        ],
    ),
    Case("world.seed -1", 4, lambda t: ["plan", str(_config(t, world__seed=-1))]),
    Case("world.seed 10**32", 4, lambda t: ["plan", str(_config(t, world__seed=10**32))]),
    Case("pretrain.seed 10**32", 4, lambda t: ["plan", str(_config(t, pretrain__seed=10**32))]),
    Case(
        "resources.gpu 1 without a GPU",
        4,
        lambda t: ["run", str(_config(t, resources__gpu=1))],
        heavy=True,
    ),
    Case(
        "duplicate train: key",
        4,
        lambda t: ["plan", str(_text(t, yaml.safe_dump(TINY) + "train: {epochs: 60}\n"))],
    ),
    Case(
        "status: manifest is a list",
        5,
        _status(lambda r: _edit_manifest(r, lambda m: [m], whole=True)),
    ),
    Case(
        "status: trials null",
        5,
        _status(lambda r: _edit_manifest(r, lambda m: m.update(trials=None))),
    ),
    Case(
        'status: config "oops"',
        5,
        _status(lambda r: _edit_manifest(r, lambda m: m.update(config="oops"))),
    ),
    Case(
        "status: no config.resources",
        5,
        _status(lambda r: _edit_manifest(r, lambda m: m["config"].pop("resources"))),
        refused=False,
    ),
    Case(
        "status: trial of unknown kind",
        5,
        _status(lambda r: _edit_manifest(r, lambda m: m["trials"][1].update(kind="weird"))),
    ),
    Case(
        "status: truncated manifest",
        5,
        _status(
            lambda r: (r / "manifest.json").write_text((r / "manifest.json").read_text()[:100])
        ),
    ),
    Case(
        "status: manifest -> /etc/hostname",
        5,
        _status(
            lambda r: (
                (r / "manifest.json").unlink(),
                (r / "manifest.json").symlink_to("/etc/hostname"),
            )
        ),
    ),
    Case("status: trial record is a list", 5, _status(lambda r: _record(r, [1, 2])), refused=False),
    Case(
        'status: "started": "yesterday"',
        5,
        _status(lambda r: _record(r, {"state": "running", "started": "yesterday"})),
        refused=False,
    ),
    Case(
        "status: state done without seconds",
        5,
        _status(lambda r: _record(r, {"state": "done"})),
        refused=False,
    ),
    Case(
        "report: trials null",
        5,
        _report(lambda r: _edit_manifest(r, lambda m: m.update(trials=None))),
    ),
    Case(
        'report: config "oops"',
        5,
        _report(lambda r: _edit_manifest(r, lambda m: m.update(config="oops"))),
    ),
    Case("report: results/ is a file", 5, _report(_results_file)),
    Case("report: non-UTF-8 file name", 5, _report(_bad_name), refused=False),
    Case("report: non-numeric task embedding", 5, _report(_embedding), refused=False),
    Case("report: read-only run folder", 5, _report(_read_only), as_nobody=True),
    Case(
        "report: report.html is a folder",
        5,
        _report(lambda r: (r / "report.html").mkdir()),
    ),
    Case("report: a value of inf", 5, _report(_inf_value), refused=False),
    Case("report: forged 0000000000000000.parquet", 2, _report(_forged), refused=False),
    Case("run: config changed under the same name", 2, _changed_config, heavy=True),
    Case("run: another itx run holds the run", 7, _leased, heavy=True),
    Case("run: storage turns read-only mid-run", 9, _read_only_mid_run, heavy=True, mid_run=True),
    Case("run: the disk fills mid-run", 9, _full_disk, heavy=True, mid_run=True),
)

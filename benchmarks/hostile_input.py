"""The attack table of issue 15: every hostile or careless input through `itx`, with exit code,
lines and bytes of output and wall time, against any checkout.

    # after (this checkout), then before (an untouched main, e.g. `git worktree add /tmp/before X`)
    .venv/bin/python benchmarks/hostile_input.py --json after.json
    .venv/bin/python benchmarks/hostile_input.py --checkout /tmp/before --json before.json
    .venv/bin/python benchmarks/hostile_input.py --compare before.json after.json

The cases live in tests/hostile_cases.py (tests/test_hostile.py asserts them in-process). Each
runs in a fresh folder as a subprocess with PYTHONPATH=<checkout>, killed with its process group
after --timeout seconds ("timeout" in the table). `--heavy` adds the cases that start Ray (and
train a seconds-scale sweep) in a checkout that lets them through; the mid-run storage failures
among them mount a bind mount remounted read-only, or a 1 MB tmpfs, so they need root. A
read-only run folder is reported as `nobody` (root ignores file modes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile_cases import CASES, Case  # noqa: E402 - after the path setup


def run_case(case: Case, checkout: Path, timeout: float) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="itx-hostile-"))
    tmp.chmod(0o755)
    (tmp / ".mpl").mkdir(mode=0o777)
    (tmp / ".mpl").chmod(0o777)  # matplotlib's cache, writable by `nobody` too
    argv = case.build(tmp)
    code = "import sys; from sweep.cli import app; sys.exit(app())"
    cmd = [sys.executable, "-c", code, *argv]
    if case.as_nobody:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "MPLCONFIGDIR": str(tmp / ".mpl"),
        "HOME": str(tmp),
        "ITX_CACHE": str(tmp / ".cache"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "COLUMNS": "120",
    }
    out = tmp / ".output"
    started = time.perf_counter()
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True
        )
        try:
            rc: object = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # Ray's processes share the group
            proc.wait()
            rc = "timeout"
    seconds = time.perf_counter() - started
    data = out.read_bytes()
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    # the line a user reads: our one-line error, else what was ignored, else the last line (the
    # exception of a traceback)
    first = next(
        (line for line in lines if line.startswith("error:")),
        next((line for line in lines if "ignored" in line or line.endswith("skipped")), None)
        or (lines[-1] if lines else ""),
    )
    escaped = (tmp / "escaped").exists() or Path("/escaped").exists()
    if (tmp / ".kill").exists():  # a case's own timer
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int((tmp / ".kill").read_text()), signal.SIGKILL)
    if (tmp / ".umount").exists():  # mounts a case made (root only)
        for mount in reversed((tmp / ".umount").read_text().split()):
            subprocess.run(["umount", "-l", mount], check=False)
    if not os.environ.get("ITX_KEEP"):
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    else:
        sys.stderr.write(data.decode(errors="replace"))
    return {
        "case": case.name,
        "item": case.item,
        "exit": rc,
        "lines": len(lines),
        "bytes": len(data),
        "seconds": round(seconds, 1),
        "first": first.strip()[:110],
        "escaped": escaped,
    }


def table(results: list[dict], before: list[dict] | None = None) -> str:
    if before is None:
        head = "| # | case | exit | lines | bytes | s | first line |\n|---|---|---|---|---|---|---|"
        body = [
            f"| {r['item']} | {r['case']} | {r['exit']} | {r['lines']} | {r['bytes']:,} | "
            f"{r['seconds']} | {_cell(r['first'])} |"
            for r in results
        ]
        return "\n".join([head, *body])
    old = {r["case"]: r for r in before}
    head = (
        "| # | case | before: exit, lines, s | after: exit, lines, s | after: the line |\n"
        "|---|---|---|---|---|"
    )
    body = []
    for r in results:
        b = old.get(r["case"])
        was = f"{b['exit']}, {b['lines']}, {b['seconds']}" if b else "not run"
        body.append(
            f"| {r['item']} | {r['case']} | {was} | {r['exit']}, {r['lines']}, {r['seconds']} "
            f"| {_cell(r['first'])} |"
        )
    return "\n".join([head, *body])


def _cell(text: str) -> str:
    text = re.sub(r"/tmp/itx-hostile-[^/ ':]+", "<tmp>", text)  # each case's own folder
    return text.replace("|", "\\|").replace("`", "'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the itx tree to attack")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--heavy", action="store_true", help="also the cases that may start Ray")
    parser.add_argument("--heavy-only", action="store_true", help="only those")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:  # several JSON files per side may be joined with commas; later ones win
        before, after = (
            list(
                {
                    r["case"]: r
                    for part in str(p).split(",")
                    for r in json.loads(Path(part).read_text())
                }.values()
            )
            for p in args.compare
        )
        order = {c.name: i for i, c in enumerate(CASES)}
        after.sort(key=lambda r: order.get(r["case"], len(order)))
        sys.stdout.write(table(after, before) + "\n")
        return
    results = []
    for case in CASES:
        if (case.heavy and not (args.heavy or args.heavy_only)) or args.only not in case.name:
            continue
        if args.heavy_only and not case.heavy:
            continue
        result = run_case(case, args.checkout.resolve(), args.timeout)
        sys.stderr.write(f"{result}\n")
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    sys.stdout.write(table(results) + "\n")


if __name__ == "__main__":
    main()

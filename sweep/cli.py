"""The `itx` command: run, plan, status, report. Heavy packages are imported inside commands."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from sweep.config import BACKENDS, ConfigError, Experiment, load_config

if TYPE_CHECKING:
    from rich.console import RenderableType

    from sweep.status import RunView

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False, add_completion=False)


def _version(show: bool) -> None:
    if show:
        import importlib.metadata

        typer.echo(f"itx {importlib.metadata.version('itx')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Does the difficulty of an English intermediate task change zero-shot transfer?"""


StorageOpt = Annotated[
    str | None,
    typer.Option(help="Storage root (folder, s3://, gs://); overrides the config's `storage`."),
]


def load_or_exit(path: Path, storage: str | None = None) -> Experiment:
    try:
        return load_config(path, {"storage": storage} if storage else None)
    except ConfigError as err:  # "configs/demo.yaml: train.lr: Input should be less than 1 (got 3)"
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None


@app.command()
def run(
    config: Path,
    storage: StorageOpt = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address; a local Ray is started when omitted.")
    ] = None,
) -> None:
    """Start the sweep in CONFIG, or resume it; finished trials are not rerun."""
    exp = load_or_exit(config, storage)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from sweep.lease import RunLease
    from sweep.progress import TrackingUnavailable
    from sweep.runner import run_sweep
    from sweep.store import ResultsStore, StorageError, first_line
    from trainers.sources import DataUnavailable

    if address is None:  # a local Ray has this machine's CPUs and GPUs: a bigger request hangs
        _check_local_resources(config, exp)
    started = time.perf_counter()
    try:
        store = ResultsStore(exp.storage, exp.name)
        store.check_writable()
        lease = RunLease(store).acquire()  # one sweep per run: a second refuses here
    except StorageError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    if lease.took_over:
        typer.echo(f"note: took over {lease.took_over}", err=True)
    try:
        outcome = run_sweep(exp, address=address)
    except (
        StorageError,
        DataUnavailable,
        TrackingUnavailable,
    ) as err:  # before any trial: one line, exit code 2
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    except Exception as err:  # mid-run: a full disk, storage made read-only, a lost cluster
        cause = first_line(err)
        try:  # Tune's own error hides the cause when its storage went away: name it
            store.check_writable()
        except StorageError as storage:
            cause = str(storage)
        typer.echo(
            f"error: sweep {exp.name} stopped after {time.perf_counter() - started:.0f} s: "
            f"{cause}; finished trials are kept (DONE markers), unfinished ones resume"
            f" from their last save: fix the cause and rerun `itx run {config}`",
            err=True,
        )
        raise typer.Exit(code=1) from None
    finally:
        lease.release()
    typer.echo(
        f"sweep {exp.name}: {outcome.planned} trials planned, {len(outcome.reused)} reused, "
        f"{len(outcome.issued)} run, {len(outcome.errored)} errored, "
        f"{len(outcome.skipped)} skipped "
        f"in {time.perf_counter() - started:.0f} s; results in {outcome.run_dir}"
    )
    for key, reason in {**outcome.errored, **outcome.skipped}.items():
        typer.echo(f"  {key}: {reason}", err=True)
    if outcome.errored:
        raise typer.Exit(code=1)


def _check_local_resources(config: Path, exp: Experiment) -> None:
    """A request the local Ray cannot meet would wait forever: refuse it in one line, exit 2."""
    cores = exp.resources.num_cpus or os.cpu_count() or 1
    need = max(exp.resources.cpu, exp.resources.pretrain_cpu)
    if need > cores:
        _fail(
            f"{config}: resources: a trial asks for {need} CPUs but this machine has "
            f"{cores}; lower resources.cpu/pretrain_cpu or pass --address"
        )
    if exp.resources.gpu:
        gpus = local_gpus()
        if exp.resources.gpu > gpus:
            _fail(
                f"{config}: resources.gpu: a trial asks for {exp.resources.gpu:g} GPU(s) but this"
                f" machine has {gpus}; set resources.gpu: 0 (CPU), or pass --address of a cluster"
                " with GPUs"
            )


def local_gpus() -> int:
    """GPUs a local Ray would see (CUDA_VISIBLE_DEVICES respected), as torch counts them."""
    import torch

    return torch.cuda.device_count()


def _answers(location: str) -> None:
    """The storage of `location` answers one call in bounded time (else NoAnswer, one line)."""
    from sweep.schema import open_store
    from trainers.paths import FIRST_ANSWER_SECONDS, within

    fs, base = open_store(location)
    within(FIRST_ANSWER_SECONDS, location, lambda: fs.get_file_info(base))


def _unexpected(command: str, err: Exception) -> NoReturn:
    """One line and exit code 1 for an error no check names; ITX_DEBUG=1 re-raises it."""
    if os.environ.get("ITX_DEBUG"):
        raise err
    from sweep.store import first_line

    typer.echo(
        f"error: itx {command} failed: {first_line(err)} (ITX_DEBUG=1 shows the traceback)",
        err=True,
    )
    raise typer.Exit(code=1)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@app.command()
def plan(
    config: Path,
    storage: StorageOpt = None,
    gpu: Annotated[
        str, typer.Option(help="GPU type of the estimates (sweep/throughput.yaml): a100, v100.")
    ] = "a100",
    gpus: Annotated[
        list[int] | None, typer.Option(help="GPUs to simulate the wall time on (repeatable).")
    ] = None,
    price: Annotated[
        float | None, typer.Option(min=0, help="Price per GPU-hour (or CPU-hour), for the cost.")
    ] = None,
    pilot: Annotated[
        str | None,
        typer.Option(help="A pilot run folder: its variance components drive the power analysis."),
    ] = None,
    power_reps: Annotated[
        int, typer.Option(min=0, max=100_000, help="Simulated studies per design; 0 skips power.")
    ] = 100,
) -> None:
    """Print the trials per stage, trainings saved by shared stages, steps, GPU-hours, wall time,
    storage, cost and the smallest detectable slope of CONFIG; runs nothing."""
    exp = load_or_exit(config, storage)
    from sweep.estimate import gpu_types
    from sweep.plan import build_plan, summarize_plan

    if gpu not in gpu_types():
        typer.echo(
            f"error: --gpu: unknown GPU type {gpu!r}; allowed: {', '.join(gpu_types())}", err=True
        )
        raise typer.Exit(code=2)
    if gpus is not None and any(n < 1 for n in gpus):
        typer.echo(f"error: --gpus: must be at least 1 (got {min(gpus)})", err=True)
        raise typer.Exit(code=2)
    try:
        trials = build_plan(exp)
    except ValueError as err:  # a data.sources override that no source entry can take
        typer.echo(f"error: {config}: {err}", err=True)
        raise typer.Exit(code=2) from None
    summary = summarize_plan(exp, trials)
    typer.echo(f"sweep {exp.name} -> {exp.run_dir}")
    typer.echo(
        f"  intermediates: {', '.join(exp.intermediates)} (+ baseline none"
        f"{', control scratch' if exp.controls.scratch else ''})"
    )
    typer.echo(f"  targets: {', '.join(exp.targets)}; languages: {', '.join(exp.languages)}")
    typer.echo(f"  seeds: {', '.join(map(str, exp.seeds))}")
    for key, value in summary.items():
        typer.echo(f"  {key}: {value}")
    from trainers.memory import memory_lines  # light: no torch

    for line in memory_lines(exp):
        typer.echo(line)
    from sweep.plan_report import estimate_lines, power_lines

    for line in estimate_lines(exp, trials, gpu, tuple(gpus or (16, 64)), price):
        typer.echo(line)
    if power_reps:
        try:
            for line in power_lines(exp, pilot, power_reps):
                typer.echo(line)
        except (ValueError, FileNotFoundError) as err:  # a pilot that cannot give estimates
            typer.echo(f"error: --pilot: {err}", err=True)
            raise typer.Exit(code=2) from None


@app.command()
def status(
    run_dir: str,
    watch: Annotated[
        bool, typer.Option("--watch", help="Redraw live until every trial has ended.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between redraws with --watch.")] = 5.0,
) -> None:
    """Per stage done/running/pending/failed/skipped, trials per node, ETA, failures of RUN_DIR.

    RUN_DIR is a folder or a URI (s3://bucket/root/name); only the store is read, never Ray.
    """
    from rich.console import Console
    from rich.live import Live

    from sweep.status import describe_run
    from sweep.store import ResultsStore, StorageError, first_line
    from trainers.paths import FIRST_ANSWER_SECONDS, within

    root, _, name = run_dir.rstrip("/").rpartition("/")
    try:
        store = ResultsStore(root or ".", name)
        view = within(FIRST_ANSWER_SECONDS * 2, run_dir, lambda: describe_run(store))
    except (FileNotFoundError, StorageError, ValueError) as err:  # RunDamaged is a ValueError
        _fail(first_line(str(err)))
    except OSError as err:
        _fail(f"{run_dir}: cannot read the run ({first_line(err)})")
    except Exception as err:  # a damage no check foresaw: still one line, never a traceback
        _unexpected("status", err)
    if not watch:
        Console().print(_status_table(run_dir, view))
        return
    with Live(_status_table(run_dir, view), refresh_per_second=1) as live:
        while any(row["running"] + row["pending"] for row in view.stages.values()):
            time.sleep(interval)
            view = describe_run(store)
            live.update(_status_table(run_dir, view))


def _status_table(run_dir: str, view: RunView) -> RenderableType:
    """A rich renderable of a `RunView`: stage counts, then nodes, ETA, failures, skips."""
    from rich.console import Group
    from rich.table import Table

    from sweep.status import STATES, duration

    table = Table(title=f"{run_dir}", title_justify="left")
    table.add_column("stage")
    for column in ("planned", *STATES):
        table.add_column(column, justify="right")
    for stage, row in view.stages.items():
        table.add_row(stage, *(str(row[c]) for c in ("planned", *STATES)))
    lines: list[RenderableType] = [table]
    if view.per_node:
        nodes = ", ".join(f"{node}: {n}" for node, n in sorted(view.per_node.items()))
        lines.append(f"trials per node: {nodes}")
    left = sum(row["running"] + row["pending"] for row in view.stages.values())
    if not left:
        eta = "none left to run"
    elif view.eta_seconds is None:
        eta = f"unknown ({view.eta_unknown})"
    else:
        eta = f"{duration(view.eta_seconds)} for {left} trials left"
    elapsed = "unknown" if view.elapsed_seconds is None else duration(view.elapsed_seconds)
    lines.append(f"elapsed: {elapsed}; ETA: {eta}")
    lines.extend(f"running {label}: {detail}" for label, detail in view.running.items())
    lines.extend(f"[red]failed[/red] {label}: {error}" for label, error in view.failures.items())
    lines.extend(f"skipped {label}: {reason}" for label, reason in view.skipped.items())
    if view.ignored:
        lines.append(
            f"ignored {len(view.ignored)} damaged record(s): {', '.join(view.ignored[:3])}"
        )
    return Group(*lines)


@app.command()
def report(
    run_dir: str,
    backend: Annotated[
        str | None,
        typer.Option(help="Mixed-model backend: exact, statsmodels, lme4; default: the config."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(help="Write the report here (folder or URI) instead of into RUN_DIR."),
    ] = None,
) -> None:
    """Write report.md, report.html and CSV tables into RUN_DIR (a folder or s3://...), or --out.

    Atomic: all files are written to a temporary folder first, then swapped in."""
    from analysis.report import ReportNotWritten, write_report
    from analysis.results import RunError
    from sweep.schema import StorageError
    from trainers.paths import NoAnswer

    allowed = BACKENDS  # the config's own choices: one list for the YAML key and this flag
    if backend is not None and backend not in allowed:
        _fail(f"--backend: unknown backend {backend!r}; allowed: {', '.join(allowed)}")
    try:
        _answers(run_dir)
        if out:
            _answers(out)
        written = write_report(run_dir, backend, out=out)
    except (FileNotFoundError, RunError, StorageError, ReportNotWritten, NoAnswer) as err:
        _fail(str(err).splitlines()[0][:500] if str(err) else type(err).__name__)
    except OSError as err:  # a read-only run folder: creating the temporary folder fails
        _fail(
            f"cannot write the report into {out or run_dir} ({str(err).splitlines()[0][:200]});"
            " a store you may only read: write it elsewhere with --out DIR"
        )
    except Exception as err:  # a damage no check foresaw: still one line, never a traceback
        _unexpected("report", err)
    for kind, path in written.items():
        typer.echo(f"{kind}: {path}")

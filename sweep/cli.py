"""The `itx` command: run, plan, status, report. Heavy packages are imported inside commands."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from sweep.config import ConfigError, Experiment, load_config

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False, add_completion=False)

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
    from sweep.runner import run_sweep

    started = time.perf_counter()
    outcome = run_sweep(exp, address=address)
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


@app.command()
def plan(config: Path, storage: StorageOpt = None) -> None:
    """Print the trial counts per stage, the DAG depth and the compute estimate; runs nothing."""
    exp = load_or_exit(config, storage)
    from sweep.plan import build_plan, summarize_plan

    summary = summarize_plan(exp, build_plan(exp))
    typer.echo(f"sweep {exp.name} -> {exp.run_dir}")
    typer.echo(
        f"  intermediates: {', '.join(exp.intermediates)} (+ baseline none"
        f"{', control scratch' if exp.controls.scratch else ''})"
    )
    typer.echo(f"  targets: {', '.join(exp.targets)}; languages: {', '.join(exp.languages)}")
    typer.echo(f"  seeds: {', '.join(map(str, exp.seeds))}")
    for key, value in summary.items():
        typer.echo(f"  {key}: {value}")


@app.command()
def status(run_dir: str) -> None:
    """Trials planned, finished, errored, skipped and pending per stage of the run in RUN_DIR."""
    from sweep.runner import run_status
    from sweep.store import ResultsStore

    root, _, name = run_dir.rstrip("/").rpartition("/")
    try:
        table = run_status(ResultsStore(root or ".", name))
    except FileNotFoundError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"{'stage':<14}{'planned':>8}{'done':>6}{'errored':>8}{'skipped':>8}{'pending':>8}")
    for stage, row in table.items():
        typer.echo(
            f"{stage:<14}"
            + "".join(
                f"{row[k]:>{w}}"
                for k, w in (
                    ("planned", 8),
                    ("done", 6),
                    ("errored", 8),
                    ("skipped", 8),
                    ("pending", 8),
                )
            )
        )


@app.command()
def report(run_dir: str) -> None:
    """Write report.md, report.html and CSV tables into RUN_DIR (a folder or s3://...)."""
    from analysis.report import write_report

    try:
        written = write_report(run_dir)
    except FileNotFoundError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    for kind, path in written.items():
        typer.echo(f"{kind}: {path}")

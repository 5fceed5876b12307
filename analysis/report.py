"""The run report: answer first, then design, figures and tables, from the results store alone.

Writes report.md, a self-contained report.html (figures as base64 PNG, no external files),
the PNG figures and CSV tables into the run folder, through the same pyarrow filesystem.

One job per module: analysis/analyse.py computes (`analyse`), analysis/sections/ words and lays
out (`build_blocks`), analysis/figures.py draws, analysis/render.py renders Markdown and the HTML
made from it, analysis/install.py swaps the files in atomically. This module wires them.
"""

from __future__ import annotations

import logging

import pandas as pd

from analysis.analyse import Analysis, Confounded, analyse
from analysis.install import ReportNotWritten, install_report, remove, stage
from analysis.mixed import Backend, compare
from analysis.render import render_html, render_markdown
from analysis.results import load_run
from analysis.sections import build_blocks, title
from analysis.sections.model import fit_log
from sweep.schema import open_store

__all__ = ["ReportNotWritten", "install_report", "report_files", "write_report"]

log = logging.getLogger(__name__)


def write_report(
    run: str,
    backend: Backend | None = None,
    confounded: Confounded = "exclude",
    out: str | None = None,
) -> dict[str, str]:
    """Build the report of `run` and write it into the run folder, or into `out` (a folder or
    URI: for a store you may only read); `backend` and `confounded` as in analyse.

    Atomic: every file goes into a temporary folder beside the report first; only when all are
    written is the report swapped in (`install_report`). A full disk leaves the old report.
    Returns {name relative to the report folder: where it was written}, e.g. "report.html".
    """
    loaded = load_run(run)
    target = out or run
    fs, base = open_store(target)
    new = stage(fs, base)  # before minutes of fitting: a folder we may not write fails now
    try:
        files = report_files(analyse(loaded, backend, confounded))
    except BaseException:
        remove(fs, new)
        raise
    install_report(fs, base, files, new)
    shown = target.rstrip("/") if "://" in target else base
    written = {name: f"{shown}/{name}" for name in files}
    log.info("report of %s: %d files written to %s", run, len(written), shown)
    return written


def report_files(analysis: Analysis) -> dict[str, bytes]:
    """Every file of the report, by path relative to the report folder."""
    blocks = build_blocks(analysis)
    files: dict[str, bytes] = {
        "tables/gains.csv": _csv(analysis.gains),
        "tables/baselines.csv": _csv(analysis.baselines),
        "tables/difficulty.csv": _csv(analysis.difficulty),
        "tables/difficulty_measures.csv": _csv(analysis.measures),
        "tables/difficulty_measure_correlations.csv": _csv(analysis.measure_corr),
        "tables/similarity.csv": _csv(analysis.similarity),
        "tables/similarity_two_stage_by_target.csv": _csv(analysis.similarity_by_target),
        "tables/intermediates.csv": _csv(analysis.two_stage.means),
        "tables/two_stage_by_target.csv": _csv(analysis.by_target),
        "tables/xtreme.csv": _csv(analysis.xtreme),
        "tables/xtreme_all_languages.csv": _csv(analysis.xtreme_published),
        "tables/missing_cells.csv": _csv(analysis.missing),
        "tables/mixed_fixed.csv": _csv(analysis.fixed_effects()),
        "tables/mixed_variance.csv": _csv(analysis.mixed.variance.reset_index()),
        "tables/model_comparison.csv": _csv(compare(list(analysis.fits.values()))),
        "tables/fit_log.csv": _csv(fit_log(analysis)),
        "tables/random_effects.csv": _csv(analysis.mixed.blups),
    }
    figures = {b.name: b.png for b in blocks if b.kind == "figure"}
    files.update({f"figures/{name}": png for name, png in figures.items()})
    markdown = render_markdown(blocks)
    files["report.md"] = markdown.encode()
    files["report.html"] = render_html(title(analysis.run), markdown, figures).encode()
    return files


def _csv(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False).encode()

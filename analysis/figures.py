"""The report's figures, sized to read at the study's size (13 intermediates x 10 targets x 203
target-language columns as well as the demo's 2 x 2 x 5).

Each builder returns a matplotlib `Figure` (tests measure its text), `png` renders one. The
report column is REPORT_WIDTH_PX wide; a figure is never wider than MAX_WIDTH_IN at DPI, so it
shows at full size or close to it, and wide grids are split by target into stacked panels.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.analyse import Analysis
from analysis.gains import cell_means
from analysis.render import Block

DPI = 110
REPORT_WIDTH_PX = 960  # the HTML report's column (60rem)
MAX_WIDTH_IN = 11.0  # at DPI: 1210 px, shown at 79% in the column at worst
MIN_FONT = 7  # points: every label is drawn at least this large
MAX_ANNOTATED_CELLS = 300  # beyond this per panel, cell numbers would be unreadable
MAX_FOREST = (
    40  # levels per forest-plot panel; the largest |effect| are shown, and the panel says so
)
MAX_LABELLED_POINTS = 40  # language labels on the overlap scatter


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" tag: it would embed a web address in every PNG.
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def block(alt: str, name: str, fig: Figure) -> Block:
    """The report block of a figure: its alt text, file name under figures/ and PNG bytes."""
    return Block("figure", alt, name=name, png=png(fig))


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(min(width, MAX_WIDTH_IN), height), layout="constrained")


def empty(text: str) -> Figure:
    fig = _figure(5, 2)
    ax = fig.subplots()
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return fig


def _order(a: Analysis, names: list[str]) -> tuple[list[str], list[str]]:
    """Intermediates by mean difficulty (the unsorted rest after), with their row labels."""
    means = a.two_stage.means
    order = [n for n in means["intermediate"].tolist() if n in names]
    order += sorted(set(names) - set(order), key=str)
    difficulty = means.set_index("intermediate")["difficulty"]
    labels = [f"{n} (d={difficulty[n]:.2f})" if n in difficulty.index else str(n) for n in order]
    return order, labels


def _limit(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0


def _annotate(ax: object, values: np.ndarray, marked: np.ndarray, limit: float) -> None:
    annotate = values.size <= MAX_ANNOTATED_CELLS
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value) and (annotate or marked[i, j]):
            number = f"{value:.1f}" if annotate else ""
            ax.text(  # type: ignore[attr-defined]
                j,
                i,
                number + ("*" if marked[i, j] else ""),
                ha="center",
                va="center",
                fontsize=MIN_FONT,
                color="white" if abs(value) > 0.6 * limit else "black",
            )


def target_heatmap(a: Analysis) -> Figure:
    """Intermediates x targets: mean gain (languages within target, then seeds), the headline's
    cells; `*` marks pairs sharing training data."""
    gains = a.gains.dropna(subset=["gain"])
    gains = gains[gains["language"] != "en"]
    if gains.empty:
        return empty("no paired zero-shot gains")
    per_seed = gains.groupby(["intermediate", "target_task", "seed"])["gain"].mean()
    grid = per_seed.groupby(["intermediate", "target_task"]).mean().unstack()
    order, labels = _order(a, list(grid.index))
    grid = grid.reindex(order)
    n_rows, n_cols = grid.shape
    fig = _figure(max(5.0, 0.75 * n_cols + 3.5), max(2.5, 0.3 * n_rows + 1.8))
    ax = fig.subplots()
    values = grid.to_numpy(float)
    limit = _limit(values)
    image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(n_cols), list(grid.columns), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_rows), labels, fontsize=8)
    shared = set(a.shared.itertuples(index=False, name=None))
    marked = np.array(
        [[(name, t) in shared for t in grid.columns] for name in grid.index], dtype=bool
    ).reshape(values.shape)
    _annotate(ax, values, marked, limit)
    fig.colorbar(image, ax=ax, label="gain (points)")
    ax.set_title("Mean zero-shot gain per target (languages averaged, then seeds)", fontsize=9)
    return fig


def language_heatmap(a: Analysis) -> Figure:
    """Per-target detail: one panel per target, intermediates x its languages (mean gain over
    seeds), stacked; each panel's columns are as wide as the figure allows."""
    grid = cell_means(a.gains)
    if grid.empty:
        return empty("no paired gains")
    order, labels = _order(a, list(grid.index))
    grid = grid.reindex(order)
    targets = sorted({str(c).split("/", 1)[0] for c in grid.columns})
    shared = set(a.shared.itertuples(index=False, name=None))
    limit = _limit(grid.to_numpy(float))
    widest = max(sum(str(c).startswith(f"{t}/") for c in grid.columns) for t in targets)
    n_rows = len(order)
    panel = 0.22 * n_rows + 1.1  # inches: rows, language labels and the title
    fig = _figure(max(5.0, 0.26 * widest + 3.5), panel * len(targets) + 0.6)
    axes = fig.subplots(len(targets), 1, squeeze=False)[:, 0]
    image = None
    for ax, target in zip(axes, targets, strict=True):
        columns = [c for c in grid.columns if str(c).startswith(f"{target}/")]
        values = grid[columns].to_numpy(float)
        image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        languages = [str(c).split("/", 1)[1] for c in columns]
        ax.set_xticks(range(len(columns)), languages, rotation=90, fontsize=MIN_FONT)
        ax.set_yticks(range(n_rows), labels, fontsize=MIN_FONT)
        ax.set_title(target, fontsize=8, loc="left")
        marked = np.array(
            [[(name, target) in shared for _ in columns] for name in order], dtype=bool
        ).reshape(values.shape)
        _annotate(ax, values, marked, limit)
    fig.colorbar(image, ax=axes[0], location="top", shrink=0.5, label="gain (points)")
    fig.suptitle("Mean gain over seeds vs the same seed's 'none' baseline", fontsize=9)
    return fig


def scatter(a: Analysis) -> Figure:
    """One point per intermediate x seed, per-intermediate means, and the two-stage line, all
    from the rows the test uses."""
    from analysis.gains import seed_means

    points = seed_means(a.tested if len(a.tested.columns) else a.gains)
    if points.empty:
        return empty("no gains with a difficulty")
    fig = _figure(7.5, 4.2)
    ax = fig.subplots()
    names = sorted(points["intermediate"].unique(), key=str)
    means = a.two_stage.means.set_index("intermediate")
    for name, color in zip(names, colors(len(names)), strict=True):
        part = points[points["intermediate"] == name]
        ax.scatter(part["difficulty"], part["gain"], color=color, alpha=0.6, s=14, label=name)
        if name in means.index:
            ax.scatter(
                [means.loc[name, "difficulty"]],
                [means.loc[name, "gain"]],
                color=color,
                marker="x",
                s=80,
            )
    ts = a.two_stage
    if math.isfinite(ts.estimate) and math.isfinite(ts.intercept):
        xs = np.linspace(points["difficulty"].min(), points["difficulty"].max(), 2)
        ax.plot(
            xs,
            ts.intercept + ts.estimate * xs,
            color="black",
            linewidth=1,
            label=f"two-stage fit: {ts.estimate:+.2f} per unit",
        )
    ax.axhline(0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("difficulty (0 solved, 1 at the metric's floor)")
    ax.set_ylabel("mean gain over targets and languages (points)")
    ax.legend(
        fontsize=MIN_FONT,
        loc="center left",
        bbox_to_anchor=(1.02, 0.5),
        frameon=False,
        ncols=1 if len(names) <= 16 else 2,
    )
    return fig


def forest(blups: pd.DataFrame) -> Figure:
    """Predicted random effects (BLUPs) with 95% intervals, one panel per component; a panel
    with more than MAX_FOREST levels shows the largest |effect| and says how many of how many."""
    if blups.empty:
        return empty("no random effects")
    parts = []
    for component in blups["component"].unique():
        part = blups[blups["component"] == component]
        title = str(component)
        if len(part) > MAX_FOREST:
            shown = part.reindex(part["value"].abs().sort_values(ascending=False).index)
            part = shown.head(MAX_FOREST).sort_values("value")
            total = int((blups["component"] == component).sum())
            title += (
                f": the {MAX_FOREST} largest |effect| of {total} levels "
                "(all in tables/random_effects.csv)"
            )
        parts.append((title, part))
    heights = [max(len(p), 2) for _, p in parts]
    fig = _figure(7, 0.17 * sum(heights) + 0.7 * len(parts) + 0.5)
    axes = fig.subplots(len(parts), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, (title, part) in zip(axes[:, 0], parts, strict=True):
        ys = np.arange(len(part))
        ax.errorbar(part["value"], ys, xerr=1.96 * part["se"], fmt="o", ms=3, capsize=2)
        ax.axvline(0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_yticks(ys, part["level"].tolist(), fontsize=MIN_FONT)
        ax.set_ylim(-0.7, len(part) - 0.3)
        ax.set_title(title, fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("random effect (points), 95% interval")
    return fig


def overlap(table: pd.DataFrame) -> Figure:
    """Mean gain per zero-shot language against its lexical overlap, one color per target;
    languages are labelled while there are at most MAX_LABELLED_POINTS."""
    fig = _figure(7.5, 4.0)
    ax = fig.subplots()
    targets = sorted(table["target_task"].unique())
    label = len(table) <= MAX_LABELLED_POINTS
    for target, color in zip(targets, colors(len(targets)), strict=True):
        part = table[table["target_task"] == target]
        ax.scatter(part["overlap"], part["gain"], color=color, label=target, s=14)
        for row in part.itertuples() if label else ():
            ax.annotate(
                str(row.language),
                (row.overlap, row.gain),
                fontsize=MIN_FONT,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.axhline(0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("lexical overlap with English")
    ax.set_ylabel("mean gain (points)")
    if not label:
        ax.set_title(f"{len(table)} languages: names in the table below", fontsize=8)
    ax.legend(fontsize=MIN_FONT, frameon=False, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return fig


def colors(n: int) -> list[tuple[float, ...]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [tuple(cmap(i % cmap.N)) for i in range(n)]

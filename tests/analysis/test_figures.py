"""The report at the real study's size: 13 intermediates x the 10 XTREME-R targets x their 203
target-language columns, rendered; every figure fits the report column and draws every label."""

import itertools

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from analysis import figures
from analysis.analyse import analyse
from analysis.render import render_markdown
from analysis.results import load_run
from analysis.sections import build_blocks
from analysis.sections.gains import language_gains
from analysis.simulate import simulate_rows, write_run, xtreme_r_language_lists


@pytest.fixture(scope="module")
def real_size(tmp_path_factory):
    languages = xtreme_r_language_lists()
    rows = simulate_rows(
        np.random.default_rng(3),
        4.0,
        13,
        2,
        targets=tuple(languages),
        languages=languages,
        tagging=("udpos", "panx"),
        sd_intermediate=1.0,
    )
    run = tmp_path_factory.mktemp("real") / "run"
    write_run(str(run), rows, status={"errored": {}, "skipped": {}})
    return analyse(load_run(str(run)))


def _drawn(fig):
    """Every text the figure draws (titles, axis labels, tick labels inside the view, cell
    numbers, legends) with its extent, after a draw."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = [*fig.texts]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        texts += [ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():
                if low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    texts.append(tick.label1)
        legend = ax.get_legend()
        if legend is not None:
            texts += legend.get_texts()
    texts = [t for t in texts if t.get_visible() and t.get_text()]
    return renderer, [(t, t.get_window_extent(renderer)) for t in texts]


def _check_readable(fig, name):
    width_in, _ = fig.get_size_inches()
    assert width_in <= figures.MAX_WIDTH_IN, name
    width_px = width_in * figures.DPI
    shown = min(1.0, figures.REPORT_WIDTH_PX / width_px)  # scale in the report's column
    _, texts = _drawn(fig)
    box = fig.bbox
    for text, extent in texts:
        # every label lies inside the figure (nothing cut off by the saved image's edge) ...
        assert extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1, (name, text.get_text())
        assert extent.y0 >= box.y0 - 1 and extent.y1 <= box.y1 + 1, (name, text.get_text())
        # ... and at least 8 px tall on screen at the report's column width
        assert text.get_fontsize() * figures.DPI / 72 * shown >= 8, (name, text.get_text())
    return texts


def _no_overlap(labels, axis):
    spans = sorted((e.x0, e.x1) if axis == "x" else (e.y0, e.y1) for e in labels)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.5, "neighbouring tick labels overlap"


@pytest.mark.slow  # four mixed-model fits on 5,070 rows: about a minute alone, more under load
def test_real_size_report_renders_with_readable_figures(real_size):
    a = real_size
    assert a.gains["target_task"].nunique() == 10
    assert (a.gains["target_task"] + "/" + a.gains["language"]).nunique() == 203
    md = render_markdown(build_blocks(a))
    assert "![Gain by target and language](figures/gain_heatmap.png)" in md
    assert "Two averages, as in XTREME-R (all ten of its targets are here)" in md
    # intermediates carry their own effect here: the random-slope answer is quoted
    answer = md.split("## Design")[0]
    assert "**Targets as a sample**" in answer
    assert "Satterthwaite t(" in answer.split("**Targets as a sample**")[1]
    # every target-language column of the detail figure has its language label, in its panel
    detail = figures.language_heatmap(a)
    texts = _check_readable(detail, "gain_heatmap")
    axes = [ax for ax in detail.axes if ax.get_title(loc="left")]
    assert len(axes) == 10
    shown = 0
    for ax in axes:
        target = ax.get_title(loc="left")
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        expected = a.gains.loc[a.gains["target_task"] == target, "language"].nunique()
        assert len(labels) == expected, target
        renderer = detail.canvas.get_renderer()  # drawn by _check_readable
        _no_overlap([t.get_window_extent(renderer) for t in labels], "x")
        _no_overlap([t.get_window_extent(renderer) for t in ax.get_yticklabels()], "y")
        assert len(ax.get_yticklabels()) == 13
        shown += len(labels)
    assert shown == 203
    assert len(texts) > 203 + 13 * 10
    # the headline's cells: 13 x 10, every number drawn
    by_target = figures.target_heatmap(a)
    _check_readable(by_target, "gain_by_target")
    numbers = [t for t in by_target.axes[0].texts if t.get_text()]
    assert len(numbers) == 130
    _check_readable(figures.scatter(a), "difficulty_vs_gain")
    _check_readable(figures.overlap(language_gains(a)), "gain_vs_overlap")
    # 195 zero-shot languages: the forest panel shows a stated subset
    forest = figures.forest(a.mixed.blups)
    _check_readable(forest, "random_effects")
    titles = [ax.get_title(loc="left") for ax in forest.axes]
    language = next(t for t in titles if t.startswith("language"))
    # the models use the 195 zero-shot languages (English is not transfer)
    assert f"the {figures.MAX_FOREST} largest |effect| of 195 levels" in language
    assert len(forest.axes[titles.index(language)].get_yticklabels()) == figures.MAX_FOREST
    # the saved images are as wide as the figures, never shown below 79%
    png = figures.png(detail)
    width = int.from_bytes(png[16:20], "big")
    assert width <= figures.MAX_WIDTH_IN * figures.DPI + 20

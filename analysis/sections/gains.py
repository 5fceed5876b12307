"""The gains as figures: by target, by target and language, against difficulty, and against
each language's lexical overlap with English."""

from __future__ import annotations

import pandas as pd

from analysis import figures
from analysis.analyse import SOURCE_LANGUAGE, Analysis
from analysis.render import Block
from analysis.sections.text import formatted


def gain_section(a: Analysis) -> list[Block]:
    """Heatmaps of the mean gain: per target (the headline's cells), then per language."""
    return [
        Block(
            "p",
            "Mean gain in points of each target's primary metric, against the same seed's "
            "`none` baseline: first per target (zero-shot languages averaged, then seeds: the "
            "cells the headline averages), then per target and language. Rows are sorted by "
            "difficulty."
            + (
                " `*` marks (intermediate, target) pairs whose target trains on the "
                "intermediate's English data."
                if len(a.shared)
                else ""
            ),
        ),
        figures.block("Gain by target", "gain_by_target.png", figures.target_heatmap(a)),
        Block(
            "p",
            "Per-target detail: one panel per target, its languages as columns (English "
            "included, where the target has it).",
        ),
        figures.block(
            "Gain by target and language", "gain_heatmap.png", figures.language_heatmap(a)
        ),
    ]


def scatter_section(a: Analysis) -> list[Block]:
    """Difficulty against gain, per intermediate and seed, with the two-stage fit."""
    return [
        Block(
            "p",
            "One point per intermediate and seed: its measured difficulty and its mean gain "
            "over targets and zero-shot languages (the rows the tests use). Crosses are the "
            "per-intermediate means the two-stage test uses; the line is its fit.",
        ),
        figures.block("Difficulty vs gain", "difficulty_vs_gain.png", figures.scatter(a)),
    ]


def language_gains(a: Analysis) -> pd.DataFrame:
    """Per target and zero-shot language: lexical overlap and mean gain over seeds and
    intermediates (mean over seeds first)."""
    usable = a.gains[a.gains["language"] != SOURCE_LANGUAGE].dropna(subset=["gain"])
    if usable.empty:
        return pd.DataFrame(columns=["target_task", "language", "overlap", "gain"])
    per_seed = usable.groupby(["target_task", "language", "seed"], as_index=False).agg(
        gain=("gain", "mean"), overlap=("overlap", "first")
    )
    return per_seed.groupby(["target_task", "language"], as_index=False).agg(
        overlap=("overlap", "first"), gain=("gain", "mean")
    )


def overlap_section(a: Analysis) -> list[Block]:
    table = language_gains(a)
    if table.empty:
        return [Block("p", "No zero-shot gains.")]
    return [
        Block(
            "p",
            "Mean gain per zero-shot language against its lexical overlap with English (share "
            "of shared words; 0 for another script, which shares no subword).",
        ),
        figures.block("Gain vs overlap", "gain_vs_overlap.png", figures.overlap(table)),
        Block("table", table=formatted(table, {"overlap": 2, "gain": 2})),
    ]

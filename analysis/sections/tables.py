"""The descriptive tables: scores in the XTREME-R layout, baselines and controls, the
intermediates' difficulty and every difficulty measure."""

from __future__ import annotations

import pandas as pd

from analysis.analyse import MEASURES, Analysis
from analysis.gains import DIFFICULTY_SCALE
from analysis.models import NEEDS_THREE
from analysis.render import Block
from analysis.sections.text import formatted
from trainers.tasks import TARGETS as REGISTERED_TARGETS  # torch-free registry module

# the benchmark's ten targets (the registry's targets with real data): only all ten make
# "XTREME-R" averages
XTREME_R_TARGETS = frozenset(t.name for t in REGISTERED_TARGETS if t.source)


def xtreme_section(a: Analysis) -> list[Block]:
    if a.xtreme.empty:
        return [Block("p", "No target results.")]
    targets = set(a.run.rows.loc[a.run.rows["kind"] == "target", "target_task"].dropna())
    complete = targets >= XTREME_R_TARGETS
    averages = (
        "Two averages, as in XTREME-R (all ten of its targets are here): the mean of the "
        "category means, and the plain mean over tasks."
        if complete
        else f"Two averages over the {len(targets)} target{'s' if len(targets) != 1 else ''} "
        f"of this run (not XTREME-R averages, which need all ten of its targets): the mean of "
        f"the category means, and the plain mean over tasks."
    )
    blocks = [
        Block(
            "p",
            "Zero-shot test scores x100 (mean over languages other than English, then over "
            f"seeds), targets as columns with their category. {averages}",
        ),
        Block("table", table=_format_scores(a.xtreme)),
    ]
    if not a.xtreme_published.empty:
        blocks += [
            Block(
                "p",
                "The same scores averaged as the benchmark publishes them, over every test "
                "language with English included, for comparison with published baselines.",
            ),
            Block("table", table=_format_scores(a.xtreme_published)),
        ]
    return blocks


def _format_scores(table: pd.DataFrame) -> pd.DataFrame:
    return formatted(table, dict.fromkeys([c for c in table.columns if c != "encoder"], 1))


def baseline_section(a: Analysis) -> list[Block]:
    if a.baselines.empty:
        return [Block("p", "No target results.")]
    numeric = [c for c in a.baselines.columns if c not in ("target_task", "language")]
    return [
        Block(
            "p",
            "Primary test metric x100, means over seeds. `chance` is a uniform guess (blank "
            "for f1), `majority` always predicts the most frequent English training label, "
            "`scratch` is a never-pretrained encoder fine-tuned the same way, `none` the "
            "pretrained encoder without an intermediate task. Scores near `scratch` come from "
            "shared words rather than learned transfer.",
        ),
        Block("table", table=formatted(a.baselines, dict.fromkeys(numeric, 1))),
    ]


def difficulty_section(a: Analysis) -> list[Block]:
    if a.difficulty.empty:
        return [Block("p", "No intermediate results.")]
    table = a.difficulty.copy()
    return [
        Block(
            "p",
            "English dev score on the primary metric, its floor (`floor_kind`: chance, "
            f"majority or zero) and difficulty. {DIFFICULTY_SCALE}",
        ),
        Block(
            "table",
            table=formatted(
                table,
                {
                    "score": 3,
                    "chance": 3,
                    "floor": 3,
                    "difficulty": 3,
                    "v_information": 3,
                    "log_train_size": 2,
                    "external": 3,
                },
            ),
        ),
    ]


MEASURE_LABELS = {
    "score": "score",
    "difficulty": "difficulty",
    "v_information": "V-information (bits)",
    "log_train_size": "log train size",
    "external": "external",
}


def measures_section(a: Analysis) -> list[Block]:
    """Per-intermediate means of every difficulty measure and their rank correlations."""
    if a.measures.empty:
        return [Block("p", "No intermediate results.")]
    table = a.measures.rename(columns=MEASURE_LABELS)
    absent = [MEASURE_LABELS[m] for m in MEASURES if a.measures[m].isna().all()]
    blocks = [
        Block(
            "p",
            "Each intermediate's difficulty measures, means over seeds: English dev score and "
            "normalized difficulty (0 solved, 1 chance); V-usable information of the English "
            "dev set (mean pointwise V-information in bits, Ethayarajh et al. 2022; higher is "
            "easier, blank for formats without label probabilities); the natural log of the "
            "training examples used; `external`, an a-priori value from the config "
            "(difficulty.external)."
            + (f" Not recorded in this run: {', '.join(absent)}." if absent else ""),
        ),
        Block(
            "table",
            table=formatted(table, {**dict.fromkeys(table.columns[1:], 3), "log train size": 2}),
        ),
    ]
    n = len(a.measures)
    if n < 3:
        blocks.append(
            Block(
                "p",
                f"Rank correlations between the measures: not computed, {NEEDS_THREE} (found {n}).",
            )
        )
        return blocks
    corr = a.measure_corr
    shown = corr[corr["intermediates"] > 0].copy()
    shown["measure"] = shown["measure"].map(MEASURE_LABELS)
    shown["versus"] = shown["versus"].map(MEASURE_LABELS)
    blocks += [
        Block(
            "p",
            "Spearman correlations between the measures across intermediates (over the "
            "intermediates where both are known). Do they agree on which tasks are hard? "
            "Difficulty and V-information should correlate negatively if they do.",
        ),
        Block("table", table=formatted(shown, {"spearman": 2})),
    ]
    return blocks

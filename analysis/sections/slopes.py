"""The two-stage test in full (overall and within each target), and task similarity, the
competing explanation, tested with the same machinery."""

from __future__ import annotations

import pandas as pd

from analysis.analyse import Analysis
from analysis.models import WEIGHTS, TwoStage, measure_correlations
from analysis.render import Block
from analysis.sections.text import formatted, num, p_value


def slope_rows(ts: TwoStage, unit: str, permuted: str) -> list[tuple[str, str]]:
    """The two-stage slope's table rows: estimate per unit of `unit`, SE, CI, t, and the
    t-test and permutation p (`permuted`: what the permutation shuffles)."""
    exact = "exact, " if ts.exact else ""
    return [
        (f"slope (points per unit {unit})", num(ts.estimate, 3)),
        ("standard error", num(ts.se, 3)),
        ("95% CI", f"{num(ts.ci_low, 3)} to {num(ts.ci_high, 3)}"),
        ("t (df)", f"{num(ts.t, 3)} ({ts.df})"),
        ("p (t-test)", p_value(ts.p_t)),
        (
            f"p (permutation of {permuted})",
            f"{p_value(ts.p_perm)} ({exact}{ts.n_perm:,} orderings)",
        ),
    ]


def two_stage_section(a: Analysis) -> list[Block]:
    ts, corr = a.two_stage, a.correlations
    means = ts.means.rename(
        columns={
            "difficulty": "mean difficulty",
            "gain": "mean gain (points)",
            "n_seeds": "seeds",
            "n_targets": "targets",
            "n": "gain rows",
        }
    )
    blocks = [
        Block(
            "p",
            f"Stage one averages each intermediate's gains with {WEIGHTS}; stage two regresses "
            "those means on mean difficulty, so the degrees of freedom come from "
            "intermediates, the unit that actually varies in difficulty.",
        ),
        Block("table", table=formatted(means, {"mean difficulty": 3, "mean gain (points)": 2})),
    ]
    rows = [
        *slope_rows(ts, "difficulty", "difficulty"),
        ("smallest p any ordering could give", p_value(ts.p_floor)),
        ("intercept (gain at difficulty 0)", num(ts.intercept, 3)),
        (
            "Spearman (permutation p over intermediates)",
            f"{num(corr.spearman, 3)} (p {p_value(corr.spearman_p)})",
        ),
        (
            "Kendall tau-b (permutation p over intermediates)",
            f"{num(corr.kendall, 3)} (p {p_value(corr.kendall_p)})",
        ),
    ]
    blocks.append(Block("table", table=pd.DataFrame(rows, columns=["", "value"])))
    if not a.by_target.empty:
        blocks += [
            Block(
                "p",
                "The same test within each target task (gain points per unit difficulty); "
                "p-values are per target, not corrected for the number of targets.",
            ),
            Block(
                "table",
                table=formatted(
                    a.by_target,
                    {"slope": 2, "se": 2, "ci_low": 2, "ci_high": 2, "p_t": 3, "p_perm": 3},
                    na="n/a",  # the note column says why
                ),
            ),
        ]
    notes = [n for n in (ts.note, corr.note) if n]
    if notes:
        blocks.append(Block("list", items=list(dict.fromkeys(notes))))
    return blocks


def similarity_matrix(a: Analysis, values: str = "similarity") -> pd.DataFrame:
    """Intermediates x targets cosine, 3 decimals; `*` marks pairs sharing training data."""
    sim = a.similarity
    grid = sim.pivot_table(index="intermediate", columns="target_task", values=values)
    shared = set(a.shared.itertuples(index=False, name=None))
    out = pd.DataFrame(
        [
            [
                "" if pd.isna(v) else f"{v:.3f}{'*' if (name, target) in shared else ''}"
                for target, v in row.items()
            ]
            for name, row in grid.iterrows()
        ],
        columns=list(grid.columns),
    )
    out.insert(0, "intermediate", list(grid.index))
    return out


def similarity_section(a: Analysis) -> list[Block]:
    """Task similarity (TextEmb cosine) and, as a competing explanation, its two-stage slope."""
    if a.similarity.empty:
        return [
            Block(
                "p",
                "No task embeddings in this store (difficulty.similarity off, or no `none` "
                "trial wrote one): task similarity, a competing explanation of transfer, was "
                "not measured.",
            )
        ]
    blocks = [
        Block(
            "p",
            "Cosine between the task embeddings (TextEmb, Vu et al. 2020: mean-pooled inputs "
            "under the pretrained encoder) of each intermediate and each target. An "
            "intermediate may help a target because their inputs are alike, whatever its "
            "difficulty: a competing explanation of the gains."
            + (" `*` marks pairs sharing English training data." if len(a.shared) else ""),
        ),
        Block("table", table=similarity_matrix(a)),
    ]
    if a.similarity["similarity_centred"].notna().any():
        blocks += [
            Block(
                "p",
                "The same cosines after subtracting the mean task embedding of this study: "
                "mean-pooled states share one direction (raw cosines crowd near 1), so the "
                "centred cosines show which tasks are alike relative to the others.",
            ),
            Block("table", table=similarity_matrix(a, "similarity_centred")),
        ]
    ts = a.similarity_two_stage
    if ts is None:
        return blocks
    rows = [
        *slope_rows(ts, "cosine", "similarity"),
        ("intermediates", str(ts.n_intermediates)),
    ]
    blocks += [
        Block(
            "p",
            "Competing explanation, the headline's machinery with similarity in place of "
            "difficulty: mean gain per intermediate regressed on its mean similarity to the "
            "targets (over the same zero-shot rows the tests use, so targets weigh by their "
            "languages). Exploratory, not the pre-specified test, and not corrected for it.",
        ),
        Block("table", table=pd.DataFrame(rows, columns=["", "value"])),
    ]
    if ts.note:
        blocks.append(Block("list", items=[ts.note]))
    means = a.two_stage.means[["intermediate", "difficulty"]].merge(
        ts.means[["intermediate", "similarity"]], on="intermediate"
    )
    corr = measure_correlations(means, ["difficulty", "similarity"]).iloc[0]
    blocks.append(
        Block(
            "p",
            f"Spearman of mean difficulty with mean similarity across intermediates: "
            f"{num(corr['spearman'], 2)}"
            + (f" ({corr['note']})" if corr["note"] else "")
            + "; where the two go together, these data cannot tell their effects apart.",
        )
    )
    by_target = a.similarity_by_target
    if not by_target.empty:
        blocks += [
            Block(
                "p",
                "Within each target, where similarity varies between intermediates: gain "
                "points per unit cosine; p-values per target, uncorrected.",
            ),
            Block(
                "table",
                table=formatted(
                    by_target,
                    {"slope": 2, "se": 2, "ci_low": 2, "ci_high": 2, "p_t": 3, "p_perm": 3},
                    na="n/a",  # the note column says why
                ),
            ),
        ]
    return blocks

"""The report's content, answer first: one function per section, each returning the section's
blocks (analysis.render.Block) from an Analysis. Wording lives here; numbers come from the
Analysis (analysis/analyse.py) and layout from analysis/render.py.

answer.py   the Answer (headline slope, estimand, random-slope model, confounded pairs)
design.py   what the store holds, what is missing, problems, provenance
gains.py    gain heatmaps, the difficulty scatter, gain against lexical overlap
slopes.py   the two-stage test in full; task similarity, the competing explanation
tables.py   XTREME-R scores, baselines and controls, difficulty and its measures
model.py    the mixed model, its variants and the fit warnings that matter
analysis/health.py writes the Trial health section.
"""

from __future__ import annotations

from analysis import health
from analysis.analyse import Analysis
from analysis.render import Block
from analysis.results import Run
from analysis.sections.answer import answer, confound_note
from analysis.sections.design import design, provenance
from analysis.sections.gains import gain_section, overlap_section, scatter_section
from analysis.sections.model import mixed_section
from analysis.sections.slopes import similarity_section, two_stage_section
from analysis.sections.tables import (
    baseline_section,
    difficulty_section,
    measures_section,
    xtreme_section,
)


def build_blocks(analysis: Analysis) -> list[Block]:
    """The report, answer first."""
    a = analysis
    blocks = [Block("h1", title(a.run)), Block("h2", "Answer"), *answer(a), *confound_note(a)]
    blocks += [Block("p", health.headline_note(a.run))]
    blocks += [Block("h2", "Trial health"), *health.section(a.run)]
    blocks += [Block("h2", "Design"), *design(a)]
    blocks += [Block("h2", "Gain by target and language"), *gain_section(a)]
    blocks += [Block("h2", "Difficulty and gain"), *scatter_section(a)]
    blocks += [Block("h2", "Two-stage test"), *two_stage_section(a)]
    blocks += [Block("h2", "Scores by target (XTREME-R layout)"), *xtreme_section(a)]
    blocks += [Block("h2", "Gain and lexical overlap"), *overlap_section(a)]
    blocks += [Block("h2", "Baselines and controls"), *baseline_section(a)]
    blocks += [Block("h2", "Difficulty of the intermediate tasks"), *difficulty_section(a)]
    blocks += [Block("h2", "Difficulty measures"), *measures_section(a)]
    blocks += [Block("h2", "Task similarity"), *similarity_section(a)]
    blocks += [Block("h2", "Mixed model"), *mixed_section(a)]
    blocks += [Block("h2", "Provenance"), *provenance(a.run)]
    return blocks


def title(run: Run) -> str:
    return f"itx report: {run.manifest.get('name', 'unnamed run')}"

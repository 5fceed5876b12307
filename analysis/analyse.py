"""The statistics of a run, computed once: gains, baselines, difficulty measures, the two-stage
test (difficulty and, as a competing explanation, task similarity) and the mixed models.

`analyse(load_run(path))` returns an `Analysis`, everything the report shows; the report's
sections (analysis/sections/) only word and lay it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import pandas as pd

from analysis.gains import (
    baseline_table,
    difficulty_table,
    gain_table,
    language_overlap,
    missing_cells,
    registry_confounds,
    shared_pairs,
    similarity_table,
    task_categories,
    xtreme_table,
)
from analysis.mixed import MAIN, NULL, OVERLAP, SLOPES, Backend, LmmFit, fit_lmm
from analysis.models import (
    Correlations,
    TwoStage,
    correlations,
    measure_correlations,
    two_stage,
    two_stage_by_target,
)
from analysis.results import Run

SOURCE_LANGUAGE = "en"  # every target is fine-tuned on English; the rest is zero-shot
# what the tests do with pairs whose target trains on the intermediate's English data
Confounded = Literal["exclude", "keep"]
CONFOUNDED: tuple[str, ...] = get_args(Confounded)
# per-intermediate difficulty measures, in the order the report shows them
MEASURES = ["score", "difficulty", "v_information", "log_train_size", "external"]


@dataclass
class Analysis:
    """Everything the report shows, computed once from a loaded run."""

    run: Run
    difficulty: pd.DataFrame
    gains: pd.DataFrame
    baselines: pd.DataFrame
    two_stage: TwoStage
    by_target: pd.DataFrame  # the two-stage test within each target task
    correlations: Correlations
    fits: dict[str, LmmFit]  # the main model first, then its variants
    xtreme: pd.DataFrame  # zero-shot: English left out
    missing: pd.DataFrame
    xtreme_published: pd.DataFrame = field(default_factory=pd.DataFrame)  # English included
    # the rows every test uses: zero-shot languages, confounded pairs out unless kept
    tested: pd.DataFrame = field(default_factory=pd.DataFrame)
    shared: pd.DataFrame = field(default_factory=pd.DataFrame)  # pairs sharing training data
    confounded: Confounded = "exclude"
    measures: pd.DataFrame = field(default_factory=pd.DataFrame)  # per intermediate, over seeds
    measure_corr: pd.DataFrame = field(default_factory=pd.DataFrame)
    similarity: pd.DataFrame = field(default_factory=pd.DataFrame)  # long: cosine per pair
    similarity_two_stage: TwoStage | None = None  # the competing explanation, same machinery
    similarity_by_target: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def mixed(self) -> LmmFit:
        return self.fits[MAIN.name]

    def fixed_effects(self) -> pd.DataFrame:
        """Every fitted model's fixed-effects table, one after another, with a `model` column."""
        parts = [f.fixed.reset_index().assign(model=n) for n, f in self.fits.items() if f.ok]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def analyse(
    run: Run, backend: Backend | None = None, confounded: Confounded = "exclude"
) -> Analysis:
    """Tables and models of a loaded run (primary metrics).

    `backend` is the mixed model's (analysis.mixed.BACKENDS); by default the manifest's
    config.analysis.backend, else "exact". `confounded` says what the tests do with
    (intermediate, target) pairs whose target trains on the intermediate's English data:
    "exclude" them (default; they stay in the gains table, flagged) or "keep" them.
    """
    if confounded not in CONFOUNDED:
        raise ValueError(f"confounded must be one of {', '.join(CONFOUNDED)}, not {confounded!r}")
    config = run.manifest.get("config") or {}
    backend = backend or (config.get("analysis") or {}).get("backend") or "exact"
    gains = gain_table(run.rows)
    # stages before a target count too (older stores flagged only the target's own data)
    confounds = registry_confounds(
        run.manifest, set(gains["intermediate"]), set(gains["target_task"])
    )
    if confounds:
        pairs = list(zip(gains["intermediate"], gains["target_task"], strict=True))
        gains["shared_training_data"] = gains["shared_training_data"].astype(bool) | [
            pair in confounds for pair in pairs
        ]
    overlap = language_overlap(run.manifest)
    gains["overlap"] = gains["language"].map(overlap).astype(float)
    difficulty = difficulty_table(run.rows, run.manifest)
    sizes = difficulty[["intermediate", "seed", "train_size"]]
    gains = gains.merge(sizes, on=["intermediate", "seed"], how="left")
    intermediates = [*(config.get("intermediates") or []), *sorted(set(gains["intermediate"]))]
    targets = [*(config.get("targets") or []), *sorted(set(gains["target_task"]))]
    similarity = similarity_table(run.embeddings, intermediates, targets)
    categories = task_categories(run.manifest, set(run.rows["target_task"].dropna()))
    gains = gains.merge(similarity, on=["intermediate", "target_task"], how="left")
    zero_shot = gains[gains["language"] != SOURCE_LANGUAGE]  # transfer, not English fine-tuning
    if confounded == "exclude":
        zero_shot = zero_shot[~zero_shot["shared_training_data"].astype(bool)]
    specs = [MAIN, NULL, SLOPES]
    if zero_shot["overlap"].nunique() > 1:
        specs.append(OVERLAP)
    fits = {spec.name: fit_lmm(zero_shot, spec, backend=backend) for spec in specs}
    if not overlap:
        fits[MAIN.name].warnings.append(
            "lexical overlap unknown (no languages in the manifest): overlap model not fitted"
        )
    measures = (
        difficulty.groupby("intermediate", as_index=False)[MEASURES].mean()
        if not difficulty.empty
        else pd.DataFrame(columns=["intermediate", *MEASURES])
    )
    return Analysis(
        run=run,
        difficulty=difficulty,
        gains=gains,
        baselines=baseline_table(run.rows),
        two_stage=two_stage(zero_shot),
        by_target=two_stage_by_target(zero_shot),
        correlations=correlations(zero_shot),
        fits=fits,
        xtreme=xtreme_table(run.rows, categories, exclude=SOURCE_LANGUAGE),
        xtreme_published=xtreme_table(run.rows, categories, exclude=None),
        missing=missing_cells(run.rows, run.manifest),
        tested=zero_shot,
        shared=shared_pairs(gains),
        confounded=confounded,
        measures=measures,
        measure_corr=measure_correlations(measures, MEASURES),
        similarity=similarity,
        similarity_two_stage=two_stage(zero_shot, covariate="similarity"),
        similarity_by_target=two_stage_by_target(zero_shot, covariate="similarity"),
    )

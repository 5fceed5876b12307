"""The run report: answer first, then design, figures and tables, from the results store alone.

Writes report.md, a self-contained report.html (figures as base64 PNG, no external files),
the PNG figures and CSV tables into the run folder, through the same pyarrow filesystem.
"""

from __future__ import annotations

import base64
import errno
import html
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from analysis import figures, health
from analysis.gains import (
    DIFFICULTY_SCALE,
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
from analysis.mixed import MAIN, NULL, OPTIMIZERS, OVERLAP, SLOPES, LmmFit, compare, fit_lmm
from analysis.models import (
    NEEDS_THREE,
    WEIGHTS,
    Correlations,
    TwoStage,
    correlations,
    measure_correlations,
    two_stage,
    two_stage_by_target,
)
from analysis.results import BASELINE, CONTROL, Run, load_run, trial_counts
from sweep.schema import open_store
from trainers.paths import store_path
from trainers.tasks import TARGETS as REGISTERED_TARGETS  # torch-free registry module

log = logging.getLogger(__name__)

MAX_LISTED = 20  # errored/skipped trials listed one by one; the rest are counted


@dataclass
class Block:
    """One piece of the report, rendered to both Markdown and HTML."""

    kind: str  # "h1", "h2", "p", "list", "table", "figure"
    text: str = ""
    items: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    name: str = ""  # figure file name
    png: bytes = b""


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
    confounded: str = "exclude"
    measures: pd.DataFrame = field(default_factory=pd.DataFrame)  # per intermediate, over seeds
    measure_corr: pd.DataFrame = field(default_factory=pd.DataFrame)
    similarity: pd.DataFrame = field(default_factory=pd.DataFrame)  # long: cosine per pair
    similarity_two_stage: TwoStage | None = None  # the competing explanation, same machinery
    similarity_by_target: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def mixed(self) -> LmmFit:
        return self.fits[MAIN.name]


# the benchmark's ten targets (the registry's targets with real data): only all ten make
# "XTREME-R" averages
XTREME_R_TARGETS = frozenset(t.name for t in REGISTERED_TARGETS if t.source)
SOURCE_LANGUAGE = "en"  # every target is fine-tuned on English; the rest is zero-shot
CONFOUNDED = ("exclude", "keep")
# per-intermediate difficulty measures, in the order the report shows them
MEASURES = ["score", "difficulty", "v_information", "log_train_size", "external"]


def analyse(run: Run, backend: str | None = None, confounded: str = "exclude") -> Analysis:
    """Tables and models of a loaded run (primary metrics).

    `backend` is the mixed model's ("statsmodels" or "lme4"); by default the manifest's
    config.analysis.backend, else statsmodels. `confounded` says what the tests do with
    (intermediate, target) pairs whose target trains on the intermediate's English data:
    "exclude" them (default; they stay in the gains table, flagged) or "keep" them.
    """
    if confounded not in CONFOUNDED:
        raise ValueError(f"confounded must be one of {', '.join(CONFOUNDED)}, not {confounded!r}")
    config = run.manifest.get("config") or {}
    backend = backend or (config.get("analysis") or {}).get("backend") or "statsmodels"
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
    # Variants try one statsmodels optimizer besides the three exact ones (report time); the
    # main model, which carries the test, tries all four.
    fits = {
        spec.name: fit_lmm(
            zero_shot,
            spec,
            optimizers=OPTIMIZERS if spec is MAIN else OPTIMIZERS[:1],
            backend=backend,
        )
        for spec in specs
    }
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


def write_report(
    run: str, backend: str | None = None, confounded: str = "exclude", out: str | None = None
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
    new = store_path(base, f".report-new-{uuid.uuid4().hex[:12]}")
    try:  # before minutes of fitting: a folder we may not write fails now
        fs.create_dir(new, recursive=True)
    except OSError as err:
        raise ReportNotWritten(_unwritable(base, err)) from None
    _check_parts(fs, base, new)
    try:
        files = _report_files(analyse(loaded, backend, confounded))
    except BaseException:
        _remove(fs, new)
        raise
    install_report(fs, base, files, new)
    shown = target.rstrip("/") if "://" in target else base
    written = {name: f"{shown}/{name}" for name in files}
    log.info("report of %s: %d files written to %s", run, len(written), shown)
    return written


def _report_files(analysis: Analysis) -> dict[str, bytes]:
    """Every file of the report, by path relative to the report folder."""
    blocks = build_blocks(analysis)
    title = _title(analysis.run)
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
        "tables/mixed_fixed.csv": _csv(_fixed_all(analysis)),
        "tables/mixed_variance.csv": _csv(analysis.mixed.variance.reset_index()),
        "tables/model_comparison.csv": _csv(compare(list(analysis.fits.values()))),
        "tables/fit_log.csv": _csv(fit_log(analysis)),
        "tables/random_effects.csv": _csv(analysis.mixed.blups),
    }
    files.update({f"figures/{b.name}": b.png for b in blocks if b.kind == "figure"})
    files["report.md"] = render_markdown(blocks).encode()
    files["report.html"] = render_html(title, blocks).encode()
    return files


REPORT_PARTS = ("report.md", "report.html", "tables", "figures")  # what a report replaces


class ReportNotWritten(OSError):
    """The report could not be written; the old one, if any, is untouched. One line."""


def _unwritable(base: str, err: OSError) -> str:
    full = getattr(err, "errno", None) == errno.ENOSPC or "space" in str(err).lower()
    cause = "the disk is full: free space" if full else "a store you may only read"
    return (
        f"cannot write the report into {base} ({_first(err)}); {cause}, "
        "or write it elsewhere with --out DIR"
    )


def install_report(fs: Any, base: str, files: dict[str, bytes], new: str | None = None) -> None:
    """Write `files` (paths relative to `base`, under REPORT_PARTS) into `<base>/.report-new-<id>`,
    then swap each part in: the old part moves into `<base>/.report-old-<id>`, the new one takes
    its place, and the old is deleted last. Any failure before the swap leaves the old report
    whole; a failure during it moves the parts already swapped back."""
    tag = uuid.uuid4().hex[:12]
    new = new or store_path(base, f".report-new-{tag}")
    old = store_path(base, f".report-old-{tag}")
    _check_parts(fs, base, new)
    try:
        for name, data in files.items():
            path = store_path(new, name)
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            with fs.open_output_stream(path) as stream:
                stream.write(data)
    except OSError as err:
        _remove(fs, new)
        raise ReportNotWritten(f"{_unwritable(base, err)}; the old report is untouched") from None
    swapped: list[str] = []
    try:
        for part in REPORT_PARTS:  # a part the new report lacks goes too: nothing stale stays
            swapped.append(part)
            if fs.get_file_info(store_path(base, part)).type != pafs.FileType.NotFound:
                fs.create_dir(old, recursive=True)
                _move(fs, store_path(base, part), store_path(old, part))
            if fs.get_file_info(store_path(new, part)).type != pafs.FileType.NotFound:
                _move(fs, store_path(new, part), store_path(base, part))
    except OSError as err:
        restored = True
        for part in reversed(swapped):  # put the old report back as it was
            try:
                moved_in = fs.get_file_info(store_path(new, part)).type == pafs.FileType.NotFound
                had_old = fs.get_file_info(store_path(old, part)).type != pafs.FileType.NotFound
                if moved_in or had_old:
                    _remove(fs, store_path(base, part))
                if had_old:
                    _move(fs, store_path(old, part), store_path(base, part))
            except OSError as undo:
                restored = False  # the old part stays in `old`, named in the log
                log.warning("report: could not restore %s from %s: %s", part, old, _first(undo))
        _remove(fs, new)
        if restored:
            _remove(fs, old)
        raise ReportNotWritten(
            f"cannot swap the new report into {base} ({_first(err)}); the old one was restored"
        ) from None
    _remove(fs, new)
    _remove(fs, old)


def _check_parts(fs: Any, base: str, new: str) -> None:
    """A folder where a report file belongs (or the reverse): refused before anything changes."""
    for part in REPORT_PARTS:
        kind = fs.get_file_info(store_path(base, part)).type
        wanted = pafs.FileType.Directory if part in ("tables", "figures") else pafs.FileType.File
        if kind not in (pafs.FileType.NotFound, wanted):
            _remove(fs, new)
            raise ReportNotWritten(
                f"{base}/{part} is a {'folder' if kind == pafs.FileType.Directory else 'file'};"
                " move it away, or write the report elsewhere with --out DIR"
            )


def _move(fs: Any, source: str, dest: str) -> None:
    """A rename; object stores cannot rename a folder, so there it moves file by file."""
    info = fs.get_file_info(source)
    if info.type == pafs.FileType.File or isinstance(fs, pafs.LocalFileSystem):
        fs.move(source, dest)
        return
    for item in fs.get_file_info(pafs.FileSelector(source, recursive=True)):
        if item.type == pafs.FileType.File:
            fs.move(item.path, dest + item.path[len(source) :])
    fs.delete_dir(source)


def _remove(fs: Any, path: str) -> None:
    try:
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif kind == pafs.FileType.File:
            fs.delete_file(path)
    except OSError as err:  # leftover temporary folders are named, not fatal
        log.warning("report: could not remove %s: %s", path, _first(err))


def _first(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:200]


# ---- content ---------------------------------------------------------------------------------


def build_blocks(analysis: Analysis) -> list[Block]:
    """The report, answer first."""
    a = analysis
    blocks = [Block("h1", _title(a.run)), Block("h2", "Answer"), *answer(a), *confound_note(a)]
    blocks += [Block("p", health.headline_note(a.run))]
    blocks += [Block("h2", "Trial health"), *health.section(a.run, Block)]
    blocks += [Block("h2", "Design"), *design(a)]
    blocks += [
        Block("h2", "Gain by target and language"),
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
        Block(
            "figure",
            "Gain by target",
            name="gain_by_target.png",
            png=figures.png(figures.target_heatmap(a)),
        ),
        Block(
            "p",
            "Per-target detail: one panel per target, its languages as columns (English "
            "included, where the target has it).",
        ),
        Block(
            "figure",
            "Gain by target and language",
            name="gain_heatmap.png",
            png=figures.png(figures.language_heatmap(a)),
        ),
        Block("h2", "Difficulty and gain"),
        Block(
            "p",
            "One point per intermediate and seed: its measured difficulty and its mean gain "
            "over targets and zero-shot languages (the rows the tests use). Crosses are the "
            "per-intermediate means the two-stage test uses; the line is its fit.",
        ),
        Block(
            "figure",
            "Difficulty vs gain",
            name="difficulty_vs_gain.png",
            png=figures.png(figures.scatter(a)),
        ),
    ]
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


def _title(run: Run) -> str:
    return f"itx report: {run.manifest.get('name', 'unnamed run')}"


ESTIMAND = (
    "**What the headline estimates** (pre-specified, as in docs/DESIGN.md): the OLS slope, "
    "across the intermediates of this study, of each intermediate's mean gain on its mean "
    "difficulty, with " + WEIGHTS + "; a target an intermediate lacks is filled by a two-way "
    "additive fit; no covariates (train size and format are not adjusted for). It is about "
    "these {targets}: the targets are fixed, the intermediates the unit of replication."
)


def answer(a: Analysis) -> list[Block]:
    """The effect of difficulty, the estimand, and the random-slope answer beside it, or why it
    cannot be tested."""
    ts, corr = a.two_stage, a.correlations
    n = ts.n_intermediates
    usable = a.tested.dropna(subset=["gain", "difficulty"])
    n_targets = usable["target_task"].nunique()
    scope = (
        f"Gains are in points of each target's primary metric against the same seed's "
        f"no-intermediate (`none`) baseline, over {_count(usable['seed'].nunique(), 'seed')}, "
        f"{_count(n_targets, 'target')} and "
        f"{_count(usable['language'].nunique(), 'zero-shot language')} "
        f"({_short_list(sorted(usable['language'].unique()))}; English, the fine-tuning "
        f"language, is in the tables but not in the tests). {DIFFICULTY_SCALE}"
    )
    if n == 0:
        return [
            Block(
                "p",
                "**Effect of difficulty: nothing to test.** No target result in this store "
                "could be paired with a same-seed baseline and an intermediate difficulty.",
            )
        ]
    listing = "; ".join(
        f"{r.intermediate}: {_num(r.gain, 2, sign=True)} points at difficulty "
        f"{_num(r.difficulty, 3)}"
        for r in ts.means.itertuples()
    )
    if ts.note and ts.note.startswith(NEEDS_THREE):
        slope = (
            f" The slope through these points is {_num(ts.estimate, 2, sign=True)} points per "
            f"unit of difficulty: a description with no uncertainty attached, not a test."
            if math.isfinite(ts.estimate)
            else ""
        )
        text = (
            f"**Effect of difficulty: cannot be tested.** The store has {n} intermediate "
            f"task{'s' if n != 1 else ''} with both a difficulty and paired gains ({listing})."
            f"{slope} Difficulty varies only between intermediate tasks, so the test "
            f"{NEEDS_THREE}; seeds, targets and languages do not add to that count."
        )
        return [Block("p", text), Block("p", scope)]
    if ts.note:
        return [
            Block("p", f"**Effect of difficulty: cannot be tested.** {ts.note} ({listing})."),
            Block("p", scope),
        ]
    if ts.exact:
        perm = (
            f"exact permutation {_p_is(ts.p_perm)} over all {ts.n_perm:,} orderings of "
            f"difficulty across intermediates"
        )
    else:
        perm = f"permutation {_p_is(ts.p_perm)} from {ts.n_perm:,} random orderings"
    excludes = ts.ci_low > 0 or ts.ci_high < 0
    if excludes:
        direction = "larger" if ts.estimate > 0 else "smaller"
        verdict = f"The interval excludes 0: harder intermediate tasks went with {direction} gains."
    else:
        verdict = "The interval includes 0: these data do not distinguish the effect from none."
    floor = ""
    if ts.exact and ts.p_floor > 0.05:
        floor = (
            f" No ordering of these {n} intermediates' difficulties can give a permutation p "
            f"below {_p(ts.p_floor)} (computed over all {ts.n_perm:,} orderings), so only a "
            f"larger set of intermediates could reach 0.05."
        )
    text = (
        f"**Effect of difficulty: {_num(ts.estimate, 2, sign=True)} points of gain "
        f"per unit of difficulty** (95% CI {_num(ts.ci_low, 2)} to {_num(ts.ci_high, 2)}; "
        f"two-stage OLS of mean gain on mean difficulty over {n} intermediates, "
        f"t({ts.df}) = {_num(ts.t, 2)}, {_p_is(ts.p_t)}; {perm}). {verdict}{floor}"
    )
    targets = f"{n_targets} target{'s' if n_targets != 1 else ''}"
    rank = (
        f"Rank correlation of mean difficulty with mean gain across intermediates: Spearman "
        f"{_num(corr.spearman, 2)} ({_p_is(corr.spearman_p)}), Kendall {_num(corr.kendall, 2)} "
        f"({_p_is(corr.kendall_p)}), permutation p-values over intermediates."
        if corr.note is None
        else f"Rank correlation: not computed ({corr.note})."
    )
    return [
        Block("p", text),
        Block("p", ESTIMAND.format(targets=targets)),
        Block("p", random_slope_sentence(a)),
        Block("p", rank),
        Block("p", scope),
    ]


def random_slope_sentence(a: Analysis) -> str:
    """The Answer's second number: the same slope with targets as a sample, or why not shown."""
    m = a.fits.get(SLOPES.name)
    lead = (
        "**Targets as a sample** (mixed model with a random slope of difficulty by target; "
        "difficulty as the intermediate's mean over seeds, its seed-to-seed deviation a "
        "separate term; no covariates, as the headline; rows weighted by the fitted variance "
        "components, not equally by target): "
    )
    if m is None or not m.ok:
        return lead + f"not fitted ({m.reason if m is not None else 'not requested'})."
    if m.singular_intermediate:
        return lead + (
            "not quoted: the fit puts the intermediate variance at ~0 (singular), so its "
            "degrees of freedom would come from rows rather than intermediates, the unit that "
            "varies in difficulty."
        )
    df = m.term("difficulty", "df")
    if not math.isfinite(df):
        return lead + "not quoted: its Satterthwaite degrees of freedom are undefined."
    return lead + (
        f"{_num(m.term('difficulty', 'estimate'), 2, sign=True)} points per unit "
        f"(95% CI {_num(m.term('difficulty', 'ci_low'), 2)} to "
        f"{_num(m.term('difficulty', 'ci_high'), 2)}; Satterthwaite t({df:.1f}) = "
        f"{_num(m.term('difficulty', 't'), 2)}, {_p_is(m.term('difficulty', 'p'))}). It "
        f"answers for a population of targets like these, the headline for these targets."
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _short_list(values: Sequence[object], most: int = 12) -> str:
    shown = ", ".join(map(str, values[:most]))
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def confound_note(a: Analysis) -> list[Block]:
    """One sentence on the (intermediate, target) pairs that share English training data."""
    n = len(a.shared)
    if not n:
        return []
    pairs = ", ".join(f"{r.intermediate} with {r.target_task}" for r in a.shared.itertuples())
    plural = n != 1
    if a.confounded == "exclude":
        text = (
            f"{n} (intermediate, target) pair{'s' if plural else ''} ({pairs}) "
            f"{'were' if plural else 'was'} excluded from every test because the target's "
            f"English training data is also the intermediate's, so "
            f"{'their gains measure' if plural else 'its gain measures'} more training on the "
            f"target's own data rather than transfer; the gains table and heatmap still show "
            f"{'them' if plural else 'it'}, marked `*`."
        )
    else:
        text = (
            f"{n} (intermediate, target) pair{'s' if plural else ''} ({pairs}) "
            f"{'share' if plural else 'shares'} English training data (the target's is also "
            f"the intermediate's) and {'are' if plural else 'is'} kept in the tests "
            f"(confounded='keep'), so {'their gains mix' if plural else 'its gain mixes'} "
            f"transfer with more training on the target's own data."
        )
    return [Block("p", text)]


def design(a: Analysis) -> list[Block]:
    """Counts of what the store holds and what is missing, then every recorded problem."""
    rows = a.run.rows
    target = rows[rows["kind"] == "target"]
    intermediates = sorted(set(rows["intermediate"].dropna()) - {BASELINE, CONTROL}, key=str)
    counts = trial_counts(a.run)
    usable = a.tested.dropna(subset=["gain", "difficulty"])
    unused = (
        " (the rest are English rows, lack a same-seed baseline or a difficulty"
        f"{', or share training data' if len(a.shared) and a.confounded == 'exclude' else ''})"
        if len(usable) < len(a.gains)
        else ""
    )
    shared_use = "excluded from" if a.confounded == "exclude" else "kept in"
    items = [
        ("intermediate tasks", f"{len(intermediates)} ({', '.join(intermediates) or 'none'})"),
        ("seeds", _listing(sorted(target["seed"].unique()))),
        ("target tasks", _listing(sorted(target["target_task"].dropna().unique()))),
        ("languages", _listing(sorted(target["language"].dropna().unique()))),
        ("`none` baseline scores (seed x target x language)", str(_scores(target, BASELINE))),
        ("`scratch` control scores (seed x target x language)", str(_scores(target, CONTROL))),
        ("gain rows used by the models", f"{len(usable)} of {len(a.gains)}{unused}"),
        (
            f"(intermediate, target) pairs sharing English training data ({shared_use} the tests)",
            str(len(a.shared)),
        ),
        ("trials planned (excluding pretraining)", str(counts["planned"])),
        ("trials finished", str(counts["finished"])),
        ("trials errored", str(counts["errored"])),
        ("trials skipped", str(counts["skipped"])),
        ("trials missing (no result, no status)", str(counts["missing"])),
    ]
    if counts["unplanned"]:
        items.append(("results of trials not in the manifest", str(counts["unplanned"])))
    items.append(("(intermediate, seed, target) cells without usable gains", str(len(a.missing))))
    table = pd.DataFrame(items, columns=["", "count"])
    blocks = [Block("table", table=table)]
    if len(a.missing):
        listed = a.missing.head(MAX_LISTED * 5)
        blocks += [
            Block("p", "Missing cells (a partial sweep is analysed with the cells it has):"),
            Block("table", table=listed.astype(str)),
        ]
        if len(a.missing) > len(listed):
            blocks.append(Block("p", f"... and {len(a.missing) - len(listed)} more."))
    if a.run.problems:
        blocks += [Block("p", "Problems reading the store:"), Block("list", items=a.run.problems)]
    for part in ("errored", "skipped"):
        reasons = a.run.status[part]
        if reasons:
            listed = [f"`{k}`: {v}" for k, v in list(reasons.items())[:MAX_LISTED]]
            if len(reasons) > MAX_LISTED:
                listed.append(f"... and {len(reasons) - MAX_LISTED} more")
            blocks += [Block("p", f"Trials {part}:"), Block("list", items=listed)]
    return blocks


def _scores(target: pd.DataFrame, intermediate: str) -> int:
    picked = target[(target["intermediate"] == intermediate) & target["primary"]]
    return len(picked.drop_duplicates(["seed", "target_task", "language"]))


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
        Block("table", table=_format(means, {"mean difficulty": 3, "mean gain (points)": 2})),
    ]
    rows = [
        ("slope (points per unit difficulty)", _num(ts.estimate, 3)),
        ("standard error", _num(ts.se, 3)),
        ("95% CI", f"{_num(ts.ci_low, 3)} to {_num(ts.ci_high, 3)}"),
        ("t (df)", f"{_num(ts.t, 3)} ({ts.df})"),
        ("p (t-test)", _p(ts.p_t)),
        (
            "p (permutation of difficulty)",
            f"{_p(ts.p_perm)} ({'exact, ' if ts.exact else ''}{ts.n_perm:,} orderings)",
        ),
        ("smallest p any ordering could give", _p(ts.p_floor)),
        ("intercept (gain at difficulty 0)", _num(ts.intercept, 3)),
        (
            "Spearman (permutation p over intermediates)",
            f"{_num(corr.spearman, 3)} (p {_p(corr.spearman_p)})",
        ),
        (
            "Kendall tau-b (permutation p over intermediates)",
            f"{_num(corr.kendall, 3)} (p {_p(corr.kendall_p)})",
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
                table=_format(
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
        Block("table", table=_format(a.baselines, dict.fromkeys(numeric, 1))),
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
            table=_format(
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
            table=_format(table, {**dict.fromkeys(table.columns[1:], 3), "log train size": 2}),
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
        Block("table", table=_format(shown, {"spearman": 2})),
    ]
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
        ("slope (points per unit cosine)", _num(ts.estimate, 3)),
        ("standard error", _num(ts.se, 3)),
        ("95% CI", f"{_num(ts.ci_low, 3)} to {_num(ts.ci_high, 3)}"),
        ("t (df)", f"{_num(ts.t, 3)} ({ts.df})"),
        ("p (t-test)", _p(ts.p_t)),
        (
            "p (permutation of similarity)",
            f"{_p(ts.p_perm)} ({'exact, ' if ts.exact else ''}{ts.n_perm:,} orderings)",
        ),
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
            f"{_num(corr['spearman'], 2)}"
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
                table=_format(
                    by_target,
                    {"slope": 2, "se": 2, "ci_low": 2, "ci_high": 2, "p_t": 3, "p_perm": 3},
                    na="n/a",  # the note column says why
                ),
            ),
        ]
    return blocks


def _fixed_all(a: Analysis) -> pd.DataFrame:
    parts = [f.fixed.reset_index().assign(model=name) for name, f in a.fits.items() if f.ok]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def mixed_section(a: Analysis) -> list[Block]:
    """Fixed effects with Satterthwaite tests, variance breakdown, comparison, warnings."""
    m = a.mixed
    engine = (
        f"the optimum kept is {m.method}'s ({m.backend})" if m.method else "no optimum was kept"
    )
    intro = (
        "`gain ~ difficulty + difficulty_within` (+ log train size and format where they vary: "
        "so this model adjusts for covariates the headline does not, and estimates a "
        "different, adjusted slope) with crossed random intercepts for target task, language "
        "within target, intermediate, intermediate:seed and seed; REML estimates from "
        f"statsmodels and an exact-likelihood engine, each from several starts; {engine}. "
        "`difficulty` is the intermediate's mean over seeds, which varies only between "
        "intermediates, so its test uses Satterthwaite degrees of freedom (about the number "
        "of intermediates minus 2), not a Wald z; `difficulty_within` is each seed's "
        "deviation from that mean (measurement noise and seed luck), kept out of the "
        "between slope."
        + (
            " The intermediate variance is at ~0 (singular fit): difficulty's df then come "
            "from rows, and this model is kept out of the Answer."
            if m.ok and m.singular_intermediate
            else ""
        )
    )
    if not m.ok:
        blocks = [Block("p", intro), Block("p", f"Not fitted: {m.reason}.")]
        others = [f"{name}: not fitted, {f.reason}" for name, f in a.fits.items() if not f.ok]
        others += [f"{name}: fitted" for name, f in a.fits.items() if f.ok]
        blocks.append(Block("list", items=[*others[1:], *m.warnings]))
        return blocks
    fixed = m.fixed.reset_index()
    blocks = [
        Block("p", intro),
        Block(
            "table",
            table=_format(
                fixed,
                {"estimate": 3, "se": 3, "df": 1, "t": 2, "ci_low": 3, "ci_high": 3},
            ).assign(p=[_p(v) for v in fixed["p"]]),
        ),
        Block(
            "p",
            "Where transfer varies: variance components (points squared) and their share of "
            "the total.",
        ),
        Block(
            "table",
            table=_format(
                m.variance.reset_index().assign(share=m.variance["share"].to_numpy() * 100),
                {"variance": 3, "sd": 3, "share": 1},
            ).rename(columns={"share": "share (%)"}),
        ),
        Block(
            "figure",
            "Random effects",
            name="random_effects.png",
            png=figures.png(figures.forest(m.blups)),
        ),
    ]
    variants = []
    for name, fit in a.fits.items():
        if name == MAIN.name:
            continue
        if not fit.ok:
            variants.append((name, "not fitted", fit.reason or "", "", ""))
            continue
        for term in fit.fixed.index:
            if term == "Intercept":
                continue
            row = fit.fixed.loc[term]
            variants.append(
                (
                    name,
                    term,
                    f"{row['estimate']:.3f} ({row['se']:.3f})",
                    f"{row['df']:.1f}",
                    _p(float(row["p"])),
                )
            )
    if variants:
        blocks += [
            Block(
                "p",
                "Variants: an uncorrelated random slope of difficulty by target task; difficulty "
                "x lexical overlap (overlap 0 = no shared subwords with English: the "
                "`difficulty` row is the effect there, `difficulty:overlap` its change per unit "
                "overlap).",
            ),
            Block(
                "table",
                table=pd.DataFrame(variants, columns=["model", "term", "estimate (SE)", "df", "p"]),
            ),
        ]
    comparison = compare(list(a.fits.values()))
    if not comparison.empty:
        blocks += [
            Block(
                "p",
                "Model comparison (ML fits; lower AIC/BIC is better; REML log-likelihoods are "
                "only comparable between models with the same fixed effects).",
            ),
            Block(
                "table",
                table=_format(comparison, {"ML llf": 2, "AIC": 2, "BIC": 2, "REML llf": 2}),
            ),
        ]
    attempts = ", ".join(f"{k} {_num(v, 3)}" for k, v in m.attempts.items())
    blocks.append(
        Block("p", f"Optimizer kept: {m.method} (REML log-likelihood per optimizer: {attempts}).")
    )
    warned = [f"{name}: {w}" for name, fit in a.fits.items() for w in fit.warnings if _matters(w)]
    quiet = sum(not _matters(w) for fit in a.fits.values() for w in fit.warnings)
    logged = (
        f" {quiet} optimizer messages that do not change the kept fit (from optimizers whose "
        "optimum was not kept, or notes on dropped components) are in tables/fit_log.csv."
        if quiet
        else ""
    )
    blocks.append(
        Block(
            "p",
            ("Fit warnings that bear on the results:" if warned else "Fit warnings: none.")
            + logged,
        )
    )
    if warned:
        blocks.append(Block("list", items=warned))
    return blocks


# Messages a reader must see: the fit may not be what it seems. The rest (an optimizer that
# stopped below the kept optimum with the same fixed effects, a component merged away, a
# nuisance variance at 0) go to tables/fit_log.csv.
MATTERS = ("different maxima", "budget", "did not report", "differs", "ML fit failed")
# singular components that change a reading: difficulty's df (intermediate), or the random
# slope's claim to generalize over targets (its variance at 0 makes it the fixed-target answer)
MATTERS_SINGULAR = ("variance of intermediate is ~0", "variance of difficulty|target_task is ~0")


def _matters(message: str) -> bool:
    if message.startswith(("statsmodels ", "ML: statsmodels ")):
        return False  # the kept optimum is the exact engine's; statsmodels' own troubles moot
    return any(key in message for key in (*MATTERS, *MATTERS_SINGULAR))


def fit_log(a: Analysis) -> pd.DataFrame:
    """Every message of every fit, with whether the report lists it."""
    rows = [
        {"model": name, "message": w, "shown": _matters(w)}
        for name, fit in a.fits.items()
        for w in fit.warnings
    ]
    return pd.DataFrame(rows, columns=["model", "message", "shown"])


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
    return _format(table, dict.fromkeys([c for c in table.columns if c != "encoder"], 1))


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
        Block(
            "figure",
            "Gain vs overlap",
            name="gain_vs_overlap.png",
            png=figures.png(figures.overlap(table)),
        ),
        Block("table", table=_format(table, {"overlap": 2, "gain": 2})),
    ]


def provenance(run: Run) -> list[Block]:
    manifest = run.manifest
    versions = manifest.get("versions") or {}
    items = [
        f"run: {manifest.get('name', 'unknown')}",
        f"created: {manifest.get('created', 'unknown')}",
        f"git commit: {manifest.get('git_commit') or 'unknown'}",
        "versions: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "unknown"),
    ]
    return [Block("list", items=items)]


# ---- rendering -------------------------------------------------------------------------------


def _num(value: float, digits: int, sign: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if value < 1e-4:
        return "< 0.0001"
    return f"{value:.3g}"


def _p_is(value: float) -> str:
    """'p = 0.0123' or 'p < 0.0001', for running text."""
    text = _p(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _listing(values: Sequence[object]) -> str:
    return f"{len(values)} ({', '.join(map(str, values)) or 'none'})"


def _format(table: pd.DataFrame, digits: dict[str, int], na: str = "") -> pd.DataFrame:
    """Strings for display: fixed decimals per column, `na` (blank by default) for NaN."""
    out = table.copy()
    for column, d in digits.items():
        if column in out:
            out[column] = [na if pd.isna(v) else f"{float(v):.{d}f}" for v in out[column].tolist()]
    return out.astype(str).replace({"None": "", "nan": ""})


def _csv(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False).encode()


def render_markdown(blocks: list[Block]) -> str:
    """GitHub-flavoured Markdown; figures link to figures/<name>."""
    parts = []
    for b in blocks:
        if b.kind == "h1":
            parts.append(f"# {b.text}")
        elif b.kind == "h2":
            parts.append(f"## {b.text}")
        elif b.kind == "p":
            parts.append(b.text)
        elif b.kind == "list":
            parts.append("\n".join(f"- {item}" for item in b.items))
        elif b.kind == "table" and b.table is not None:
            parts.append(_markdown_table(b.table))
        elif b.kind == "figure":
            parts.append(f"![{b.text}](figures/{b.name})")
    return "\n\n".join(parts) + "\n"


def _markdown_table(table: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join([header, rule, *body])


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the report uses: **bold** and `code`."""
    out = html.escape(text)
    out = _pairs(out, "**", "<strong>", "</strong>")
    return _pairs(out, "`", "<code>", "</code>")


def _pairs(text: str, mark: str, start: str, end: str) -> str:
    pieces = text.split(mark)
    if len(pieces) % 2 == 0:  # unbalanced: leave as written
        return text
    return "".join(
        piece if i % 2 == 0 else f"{start}{piece}{end}" for i, piece in enumerate(pieces)
    )


def render_html(title: str, blocks: list[Block]) -> str:
    """One self-contained page: inline CSS, figures as data URIs, no external references."""
    render: dict[str, Callable[[Block], str]] = {
        "h1": lambda b: f"<h1>{_inline(b.text)}</h1>",
        "h2": lambda b: f"<h2>{_inline(b.text)}</h2>",
        "p": lambda b: f"<p>{_inline(b.text)}</p>",
        "list": lambda b: "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>",
        "table": lambda b: _html_table(b.table) if b.table is not None else "",
        "figure": lambda b: (
            f'<figure><img alt="{html.escape(b.text)}" src="data:image/png;base64,'
            f'{base64.b64encode(b.png).decode()}"></figure>'
        ),
    }
    body = "\n".join(render[b.kind](b) for b in blocks)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _html_table(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{_inline(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline(str(v))}</td>" for v in row) + "</tr>"
        for row in table.itertuples(False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

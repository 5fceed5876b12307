"""The Answer: the effect of difficulty (the pre-specified two-stage slope), its estimand, the
random-slope model beside it, the rank correlations, and the pairs kept out of the tests."""

from __future__ import annotations

import math

from analysis.analyse import Analysis
from analysis.gains import DIFFICULTY_SCALE
from analysis.mixed import SLOPES
from analysis.models import NEEDS_THREE, WEIGHTS
from analysis.render import Block
from analysis.sections.text import count, num, p_is, p_value, short_list

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
        f"no-intermediate (`none`) baseline, over {count(usable['seed'].nunique(), 'seed')}, "
        f"{count(n_targets, 'target')} and "
        f"{count(usable['language'].nunique(), 'zero-shot language')} "
        f"({short_list(sorted(usable['language'].unique()))}; English, the fine-tuning "
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
        f"{r.intermediate}: {num(r.gain, 2, sign=True)} points at difficulty {num(r.difficulty, 3)}"
        for r in ts.means.itertuples()
    )
    if ts.note and ts.note.startswith(NEEDS_THREE):
        slope = (
            f" The slope through these points is {num(ts.estimate, 2, sign=True)} points per "
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
            f"exact permutation {p_is(ts.p_perm)} over all {ts.n_perm:,} orderings of "
            f"difficulty across intermediates"
        )
    else:
        perm = f"permutation {p_is(ts.p_perm)} from {ts.n_perm:,} random orderings"
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
            f"below {p_value(ts.p_floor)} (computed over all {ts.n_perm:,} orderings), so only a "
            f"larger set of intermediates could reach 0.05."
        )
    text = (
        f"**Effect of difficulty: {num(ts.estimate, 2, sign=True)} points of gain "
        f"per unit of difficulty** (95% CI {num(ts.ci_low, 2)} to {num(ts.ci_high, 2)}; "
        f"two-stage OLS of mean gain on mean difficulty over {n} intermediates, "
        f"t({ts.df}) = {num(ts.t, 2)}, {p_is(ts.p_t)}; {perm}). {verdict}{floor}"
    )
    targets = f"{n_targets} target{'s' if n_targets != 1 else ''}"
    rank = (
        f"Rank correlation of mean difficulty with mean gain across intermediates: Spearman "
        f"{num(corr.spearman, 2)} ({p_is(corr.spearman_p)}), Kendall {num(corr.kendall, 2)} "
        f"({p_is(corr.kendall_p)}), permutation p-values over intermediates."
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
        f"{num(m.term('difficulty', 'estimate'), 2, sign=True)} points per unit "
        f"(95% CI {num(m.term('difficulty', 'ci_low'), 2)} to "
        f"{num(m.term('difficulty', 'ci_high'), 2)}; Satterthwaite t({df:.1f}) = "
        f"{num(m.term('difficulty', 't'), 2)}, {p_is(m.term('difficulty', 'p'))}). It "
        f"answers for a population of targets like these, the headline for these targets."
    )


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

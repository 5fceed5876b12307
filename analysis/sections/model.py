"""The mixed model section: fixed effects with Satterthwaite tests, variance components, the
variants and their comparison, and the fit warnings a reader must see (the rest go to
tables/fit_log.csv)."""

from __future__ import annotations

import pandas as pd

from analysis import figures
from analysis.analyse import Analysis
from analysis.mixed import MAIN, compare
from analysis.render import Block
from analysis.sections.text import count, formatted, num, p_value

# how the report names each backend (analysis.mixed.BACKENDS)
ENGINES = {
    "exact": (
        "the exact-likelihood engine",
        "analysis/mixed.py: L-BFGS-B from several starts, polished by Powell and Nelder-Mead; "
        "it matches lme4 in tests/analysis",
    ),
    "statsmodels": ("statsmodels MixedLM", "its optimizers, judged on the exact likelihood"),
    "lme4": ("lme4 and lmerTest", "R, through Rscript"),
}


def mixed_section(a: Analysis) -> list[Block]:
    """Fixed effects with Satterthwaite tests, variance breakdown, comparison, warnings."""
    m = a.mixed
    engine, detail = ENGINES[m.backend]
    intro = (
        f"**Fitted with {engine}** ({detail}). "
        "`gain ~ difficulty + difficulty_within` (+ log train size and format where they vary: "
        "so this model adjusts for covariates the headline does not, and estimates a "
        "different, adjusted slope) with crossed random intercepts for target task, language "
        "within target, intermediate, intermediate:seed and seed; REML estimates. "
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
            table=formatted(
                fixed,
                {"estimate": 3, "se": 3, "df": 1, "t": 2, "ci_low": 3, "ci_high": 3},
            ).assign(p=[p_value(v) for v in fixed["p"]]),
        ),
        Block(
            "p",
            "Where transfer varies: variance components (points squared) and their share of "
            "the total.",
        ),
        Block(
            "table",
            table=formatted(
                m.variance.reset_index().assign(share=m.variance["share"].to_numpy() * 100),
                {"variance": 3, "sd": 3, "share": 1},
            ).rename(columns={"share": "share (%)"}),
        ),
        figures.block("Random effects", "random_effects.png", figures.forest(m.blups)),
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
                    p_value(float(row["p"])),
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
                table=formatted(comparison, {"ML llf": 2, "AIC": 2, "BIC": 2, "REML llf": 2}),
            ),
        ]
    attempts = ", ".join(f"{k} {num(v, 3)}" for k, v in m.attempts.items())
    blocks.append(
        Block("p", f"Optimizer kept: {m.method} (REML log-likelihood per optimizer: {attempts}).")
        if attempts
        else Block("p", f"Optimizer: {m.method}.")
    )
    warned = [f"{name}: {w}" for name, fit in a.fits.items() for w in fit.warnings if _matters(w)]
    quiet = sum(not _matters(w) for fit in a.fits.values() for w in fit.warnings)
    if warned:
        blocks += [
            Block("p", "Fit warnings that bear on the results:"),
            Block("list", items=warned),
        ]
    else:
        blocks.append(Block("p", "Fit warnings: none that bear on the results."))
    if quiet:
        blocks.append(
            Block(
                "p",
                f"{count(quiet, 'other fit message')} (optimizer runs that stopped below the "
                "kept optimum with the same fixed effects, components dropped or merged by the "
                "design, nuisance variances at ~0) do not change the kept fit: they are in "
                "tables/fit_log.csv.",
            )
        )
    return blocks


# Messages a reader must see: the fit may not be what it seems. The rest (an optimizer that
# stopped below the kept optimum with the same fixed effects, a component merged away, a
# nuisance variance at 0) go to tables/fit_log.csv.
MATTERS = ("different maxima", "budget", "ML fit failed", "failed to converge")
# singular components that change a reading: difficulty's df (intermediate), or the random
# slope's claim to generalize over targets (its variance at 0 makes it the fixed-target answer)
MATTERS_SINGULAR = ("variance of intermediate is ~0", "variance of difficulty|target_task is ~0")


def _matters(message: str) -> bool:
    """Whether a fit message changes what a reader should believe (listed in the report)."""
    return any(key in message for key in (*MATTERS, *MATTERS_SINGULAR))


def fit_log(a: Analysis) -> pd.DataFrame:
    """Every message of every fit, with whether the report lists it."""
    rows = [
        {"model": name, "message": w, "shown": _matters(w)}
        for name, fit in a.fits.items()
        for w in fit.warnings
    ]
    return pd.DataFrame(rows, columns=["model", "message", "shown"])

"""Did a fine-tune learn? The health rule, its policy setting and the restart seeds.

Fine-tuning a pretrained encoder on small data sometimes fails outright ("degenerate runs":
Dodge et al. 2020; Mosbach et al. 2021): the model ends at chance or at the majority label. A
study whose answer such failures can move has no answer, so every fine-tune is checked.

The rule. A fine-tune is degenerate when either
  1. its selected English dev score is not clearly above the better of chance and the majority
     baseline (the most frequent training label, scored on the same dev set): with n dev examples
     and baseline b, the score must reach the smallest k/n with P(X >= k) < alpha for
     X ~ Binomial(n, b), a one-sided binomial test of "no better than the baseline" at level alpha
     (default 0.01). For accuracy this is the exact test. For the other metric families (tagging
     F1, QA F1/EM, retrieval MRR/MAP) the same bound is used on the score as a proportion of the n
     dev examples: a conservative stand-in (token-level and graded scores vary less than a
     proportion of n examples), with baseline the majority label's score where one exists
     (tagging) and 0 otherwise (no span or ranking baseline scores above 0 in expectation worth a
     bound: chance of a random span or ranking is near 0);
  2. or its training loss did not fall: the mean loss of the last epoch is not below the mean
     of the first LOSS_START_STEPS steps (trainers.loop).
Formats that do not train (Tatoeba's retrieval) are always healthy.

Light to import (no torch): sweep.config validates the `health:` setting with it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class HealthConfig(BaseModel):
    """`health:` in a config. `restart`: a degenerate fine-tune is trained again with a restart
    seed derived from the trial seed, up to `restarts` times; one that stays degenerate marks its
    trial unhealthy, left out of the analysis, and its children are skipped. `flag`: no restart;
    the trial is kept in the analysis and flagged in the report."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: Literal["restart", "flag"] = "restart"
    restarts: int = Field(2, ge=0, le=10)
    alpha: float = Field(0.01, gt=0, lt=0.5)  # level of the one-sided binomial test


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    threshold: float  # the dev score the rule asks for
    baseline: float  # the better of chance and majority (0 where neither exists)
    reason: str | None  # None when healthy


def restart_seed(seed: int, attempt: int) -> int:
    """Training seed of a trial's `attempt`-th fine-tune: the trial seed first, then a hash of
    (seed, attempt) so restarts never reuse another trial's seed. Data stays the trial seed's."""
    if attempt == 0:
        return seed
    digest = hashlib.sha256(f"itx-restart/{seed}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


def threshold(baseline: float, n: int, alpha: float) -> float:
    """Smallest score k/n with P(X >= k) < alpha for X ~ Binomial(n, baseline)."""
    from scipy.stats import binom

    if n <= 0:
        return math.inf
    k = int(binom.isf(alpha, n, baseline))  # P(X > k) <= alpha; step up while P(X >= k) >= alpha
    while k <= n and binom.sf(k - 1, n, baseline) >= alpha:
        k += 1
    while k > 0 and binom.sf(k - 2, n, baseline) < alpha:
        k -= 1
    return k / n


def baseline_of(chance: float, majority: float) -> float:
    values = [v for v in (chance, majority) if v is not None and math.isfinite(v)]
    return max(values, default=0.0)


def check(
    score: float,
    n: int,
    chance: float,
    majority: float,
    loss_start: float,
    loss_end: float,
    alpha: float = 0.01,
    metric: str = "score",
    trained: bool = True,
) -> Verdict:
    """The rule of the module docstring for one fine-tune."""
    base = baseline_of(chance, majority)
    if not trained:
        return Verdict(True, math.nan, base, None)
    need = threshold(base, n, alpha)
    reasons = []
    if not score >= need - 1e-12:  # NaN fails too
        reasons.append(
            f"English dev {metric} {score:.3f} not clearly above baseline {base:.3f} "
            f"(needs {need:.3f} at n={n}, alpha={alpha})"
        )
    if not loss_end < loss_start:
        reasons.append(f"training loss did not fall ({loss_start:.3f} -> {loss_end:.3f})")
    return Verdict(not reasons, need, base, "; ".join(reasons) or None)


def check_outcome(outcome: Any, task: Any, alpha: float) -> tuple[Verdict, dict[str, Any]]:
    """The verdict on a trainers.loop.Outcome and its record (the FITS columns it determines)."""
    from trainers.metrics import primary_metric

    metric = primary_metric(task.metric_family)
    score = outcome.dev.get(metric, math.nan)
    chance = task.chance if metric == "accuracy" else math.nan
    majority = outcome.dev_majority.get(metric, math.nan)
    verdict = check(
        score,
        outcome.n_dev,
        chance,
        majority,
        outcome.loss_start,
        outcome.loss_end,
        alpha=alpha,
        metric=metric,
        trained=outcome.steps > 0,
    )
    record = {
        "task": task.name,
        "metric": metric,
        "dev_curve": list(outcome.dev_curve),
        "best_epoch": outcome.best_epoch,
        "dev_score": score,
        "n_dev": outcome.n_dev,
        "chance": chance,
        "majority": majority,
        "threshold": verdict.threshold,
        "steps": outcome.steps,
        "loss_start": outcome.loss_start,
        "loss_end": outcome.loss_end,
        "healthy": verdict.healthy,
        "reason": verdict.reason,
    }
    return verdict, record


def skipped_record(why: str) -> dict[str, Any]:
    """The record of a fine-tune that never ran (its parent is unhealthy or was skipped), in
    `check_outcome`'s fields: unhealthy, nothing measured, `reason` saying why."""
    nan = math.nan
    return {
        "task": None,
        "metric": None,
        "dev_curve": [],
        "best_epoch": -1,
        "dev_score": nan,
        "n_dev": 0,
        "chance": nan,
        "majority": nan,
        "threshold": nan,
        "steps": 0,
        "loss_start": nan,
        "loss_end": nan,
        "healthy": False,
        "reason": f"skipped: {why}",
    }

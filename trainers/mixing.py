"""Multi-task intermediate data: one training set sampled from several tasks of one head.

Rates follow the multi-task literature (e.g. T5, XTREME's multi-task baselines): task i is drawn
with probability proportional to n_i ** (1 / T). T = 1 is proportional (examples-proportional
mixing); a large T approaches uniform over tasks, so small tasks are not drowned.
"""

from __future__ import annotations

import numpy as np


def mixture_counts(sizes: dict[str, int], total: int, temperature: float) -> dict[str, int]:
    """Examples drawn from each task: `total` split by the tempered rates, capped at each task's
    size (a task cannot give more distinct examples than it has); the remainder is redistributed."""
    if temperature < 1:
        raise ValueError(f"mixture temperature must be >= 1, got {temperature}")
    if total > sum(sizes.values()):
        raise ValueError(f"mixture: {total} examples asked of {sum(sizes.values())} available")
    names = sorted(sizes)
    counts = dict.fromkeys(names, 0)
    left = total
    while left > 0:
        open_ = [n for n in names if counts[n] < sizes[n]]
        weights = np.array([sizes[n] ** (1 / temperature) for n in open_], float)
        share = weights / weights.sum() * left
        take = {
            n: min(sizes[n] - counts[n], int(np.floor(s)))
            for n, s in zip(open_, share, strict=True)
        }
        if not any(take.values()):  # the rounding remainder: one each, largest share first
            order = np.argsort(-share)
            take = {open_[i]: 1 for i in order[:left]}
        for name, k in take.items():
            counts[name] += k
        left = total - sum(counts.values())
    return counts


def mix(parts: dict[str, list], total: int | None, temperature: float, seed: int) -> list:
    """`total` examples (None: all of them) drawn without replacement from the parts by the
    tempered rates, shuffled together; fixed by `seed`."""
    sizes = {name: len(examples) for name, examples in parts.items()}
    counts = mixture_counts(sizes, sum(sizes.values()) if total is None else total, temperature)
    rng = np.random.default_rng(seed)
    mixed = []
    for name in sorted(parts):
        picked = rng.choice(sizes[name], size=counts[name], replace=False)
        mixed += [parts[name][i] for i in sorted(picked)]
    order = rng.permutation(len(mixed))
    return [mixed[i] for i in order]

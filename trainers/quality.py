"""Malformed examples are counted per split and language and dropped; above a threshold, fatal.

Real data sets arrive with empty texts, labels outside the label set and spans outside their
context. Dropping them silently would change what a score means, so every drop is counted by
reason, returned with the outcome, and written beside the trial's results.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from trainers.tasks import SPLITS, Task, TaskData


class DataError(ValueError):
    """Too many malformed examples: one line naming task, split, language and counts."""


def clean(
    task: Task, data: TaskData, max_fraction: float
) -> tuple[TaskData, dict[str, dict[str, int]]]:
    """Drop malformed examples; return the clean data and {"split/lang": {reason: count}}.

    Retrieval pools are candidates, not examples: they are kept as they are.
    Raises DataError when more than `max_fraction` of any split/language is malformed.
    """
    from trainers.heads import get_format

    check = get_format(task.format).check
    kept: dict[str, dict[str, list]] = {}
    report: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        kept[split] = {}
        for lang, examples in data.split(split).items():
            reasons = Counter()
            good = []
            for example in examples:
                problem = check(task, example)
                if problem is None:
                    good.append(example)
                else:
                    reasons[problem] += 1
            kept[split][lang] = good
            if reasons:
                report[f"{split}/{lang}"] = dict(reasons)
                bad = sum(reasons.values())
                if bad > max_fraction * len(examples) or not good:
                    detail = ", ".join(f"{n} {why}" for why, n in reasons.most_common())
                    raise DataError(
                        f"{task.name} {split}/{lang}: {bad} of {len(examples)} examples malformed "
                        f"({detail}); allowed at most {max_fraction:.1%} (data.max_malformed)"
                    )
    return dataclasses.replace(data, **kept), report

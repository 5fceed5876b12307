"""Malformed examples are counted per split and language and dropped; above a threshold, fatal.

Real data sets arrive with empty texts, labels outside the label set and spans outside their
context. Dropping them silently would change what a score means, so every drop is counted by
reason, returned with the outcome, and written beside the trial's results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from trainers.tasks import Example, Task


class DataError(ValueError):
    """Too many malformed examples: one line naming task, split, language and counts."""


def _label_problem(task: Task, label: object) -> str | None:
    if isinstance(label, bool) or not isinstance(label, int):
        return "label not an integer"
    if not 0 <= label < len(task.labels):
        return "label outside the label set"
    return None


def _classification(task: Task, example: Example) -> str | None:
    for field in ("text", "text_pair"):
        if field in example and (not isinstance(example[field], str) or not example[field].strip()):
            return f"empty {field}"
    return _label_problem(task, example.get("label"))


def _tagging(task: Task, example: Example) -> str | None:
    words, tags = example.get("words"), example.get("tags")
    if not words:
        return "empty sentence"
    if any(not isinstance(w, str) or not w.strip() for w in words):
        return "empty word"
    if not isinstance(tags, list) or len(tags) != len(words):
        return "tags and words differ in length"
    problems = [_label_problem(task, t) for t in tags]
    return next((p for p in problems if p), None)


CHECKS: dict[str, Callable[[Task, Example], str | None]] = {
    "classification": _classification,
    "tagging": _tagging,
}


def clean(
    task: Task, data: dict[str, dict[str, list[Example]]], max_fraction: float
) -> tuple[dict[str, dict[str, list[Example]]], dict[str, dict[str, int]]]:
    """Drop malformed examples; return the clean data and {"split/lang": {reason: count}}.

    Raises DataError when more than `max_fraction` of any split/language is malformed.
    """
    check = CHECKS[task.format]
    kept: dict[str, dict[str, list[Example]]] = {}
    report: dict[str, dict[str, int]] = {}
    for split, by_lang in data.items():
        kept[split] = {}
        for lang, examples in by_lang.items():
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
    return kept, report

"""A Tune Searcher that releases each trial as soon as its own parent has finished.

No barrier between stages: a target trial starts the moment its intermediate is done, while other
intermediates still train. It enforces the concurrency limit itself (`set_max_concurrency`
returns True): Tune's `ConcurrencyLimiter` forgets errored trials, so a retried parent's completion
would never reach us. A parent that errors for good has its descendants skipped, with the reason.

Among trials whose parent is done, the one heading the longest remaining chain goes first (its
own cost plus its costliest line of descendants, `chain_lengths`): the critical path starts as
early as possible, and short independent trials fill the gaps (`benchmarks/scheduling.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from sweep.plan import TrialSpec


def chain_lengths(
    trials: list[TrialSpec], cost: dict[str, float] | None = None
) -> dict[str, float]:
    """Per trial: its cost plus the largest such sum over its children (the longest chain it
    heads). `cost` is per key (e.g. estimated GPU-seconds); 1 per trial when not given."""
    length: dict[str, float] = {}
    children: dict[str, list[str]] = {}
    for t in trials:
        if t.parent is not None:
            children.setdefault(t.parent, []).append(t.key)
    for t in reversed(trials):  # parents come first, so children are measured before them
        own = 1.0 if cost is None else float(cost.get(t.key, 0.0))
        length[t.key] = own + max((length[c] for c in children.get(t.key, ())), default=0.0)
    return length


class DagSearcher(Searcher):
    def __init__(
        self,
        trials: list[TrialSpec],
        done: set[str],
        params: dict[str, Any],
        cost: dict[str, float] | None = None,
    ) -> None:
        super().__init__(metric="done", mode="max")
        self.chain = chain_lengths(trials, cost)
        # parents before children; longest chains first (stable: plan order among equals)
        pending = [t for t in trials if t.key not in done]
        order = {t.key: i for i, t in enumerate(pending)}
        self.pending = sorted(pending, key=lambda t: (-self.chain[t.key], order[t.key]))
        self.done = set(done)
        self.params = params  # shared by every trial: the experiment config
        self.running: dict[str, str] = {}  # Tune trial id -> trial key
        self.errored: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.issued: list[str] = []  # keys in release order, for tests and status
        self.max_concurrent = 1

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self.pending and not self.running:
            return Searcher.FINISHED
        if len(self.running) >= self.max_concurrent:
            return None
        for i, spec in enumerate(self.pending):
            if spec.parent is None or spec.parent in self.done:
                del self.pending[i]
                self.running[trial_id] = spec.key
                self.issued.append(spec.key)
                return {**self.params, "spec": spec.model_dump()}
        return None  # everything left waits on a running parent

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        key = self.running.pop(trial_id, None)
        if key is None:
            return
        if not error:
            self.done.add(key)
            return
        self.errored[key] = "trial errored (see Tune's error.txt)"
        self._skip_descendants(key)

    def _skip_descendants(self, key: str) -> None:
        failed = {key}
        keep = []
        for spec in self.pending:  # parents come first, so one pass finds grandchildren too
            if spec.parent in failed:
                failed.add(spec.key)
                self.skipped[spec.key] = f"parent {key} errored"
            else:
                keep.append(spec)
        self.pending = keep

    def save(self, checkpoint_path: str) -> None:
        """JSON, not pickle; `itx run` re-derives the truth from DONE markers anyway."""
        state = {
            "pending": [t.model_dump() for t in self.pending],
            "done": sorted(self.done),
            "errored": self.errored,
            "skipped": self.skipped,
            "issued": self.issued,
        }
        Path(checkpoint_path).write_text(json.dumps(state))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        self.pending = [TrialSpec.model_validate(t) for t in state["pending"]]
        self.done = set(state["done"])
        self.errored, self.skipped, self.issued = (
            state["errored"],
            state["skipped"],
            state["issued"],
        )
        self.running = {}

"""The trial DAG: pretrain once, one intermediate training per (task, seed), one target trial per
(intermediate or `none` or `scratch`, seed, target), each keyed by a hash of what determines it."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict

from sweep.config import Experiment
from sweep.schema import BASELINE, SCRATCH
from trainers.settings import pretrain_key


class TrialSpec(BaseModel):
    """One node of the DAG. `key` addresses its artifacts; `parent` is the key it waits for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    kind: Literal["pretrain", "intermediate", "target"]
    intermediate: str | None = None
    seed: int | None = None
    target_task: str | None = None
    parent: str | None = None

    @property
    def label(self) -> str:
        parts = [self.kind, self.intermediate, self.target_task]
        seed = [f"seed={self.seed}"] if self.seed is not None else []
        return "/".join([p for p in parts if p] + seed)


def _hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encoder_key(exp: Experiment) -> str:
    """Stage 0's key: the synthetic pretraining's content hash, or the hub encoder's name."""
    if exp.encoder is not None:
        return _hash("hub-encoder", exp.encoder.model_dump(), exp.model.max_length)
    return pretrain_key(exp.world, exp.model, exp.pretrain)


def _task_settings(exp: Experiment, name: str) -> list:
    """What of a task's definition a trial key depends on (options, mixtures, stages)."""
    task = exp.task(name)
    mixture = exp.mixtures.get(name)
    stages = [_task_settings(exp, stage) for stage in task.before]
    options = exp.tasks.get(name)
    return [
        repr(task),
        mixture.model_dump() if mixture else None,
        options.model_dump() if options else None,
        stages,
    ]


def build_plan(exp: Experiment) -> list[TrialSpec]:
    """Trials in an order where every parent comes before its children."""
    pre = TrialSpec(key=encoder_key(exp), kind="pretrain")
    fine_tune = [
        exp.train.model_dump(),
        exp.data.model_dump(),
        exp.model.max_length,
        exp.difficulty.model_dump(exclude={"external"}),  # external values are analysis-only
    ]
    trials = [pre]
    encoders = {}
    for seed in exp.seeds:
        for name in exp.intermediates:
            spec = TrialSpec(
                key=_hash(
                    "intermediate", pre.key, name, seed, fine_tune, _task_settings(exp, name)
                ),
                kind="intermediate",
                intermediate=name,
                seed=seed,
                parent=pre.key,
            )
            encoders[name, seed] = spec.key
            trials.append(spec)
    parents = [BASELINE, *([SCRATCH] if exp.controls.scratch else []), *exp.intermediates]
    for seed in exp.seeds:
        for parent in parents:
            parent_key = encoders.get((parent, seed), pre.key)
            for target in exp.targets:
                key = _hash(
                    "target",
                    parent_key,
                    parent,
                    target,
                    seed,
                    fine_tune,
                    exp.languages_of(exp.task(target)),
                    _task_settings(exp, target),
                )
                trials.append(
                    TrialSpec(
                        key=key,
                        kind="target",
                        intermediate=parent,
                        seed=seed,
                        target_task=target,
                        parent=parent_key,
                    )
                )
    return trials


def summarize_plan(exp: Experiment, trials: list[TrialSpec]) -> dict[str, object]:
    """Counts per stage, DAG depth and a rough compute estimate, for `itx plan`."""
    counts = Counter(t.kind for t in trials)
    depth = {t.key: 0 for t in trials}
    for t in trials:
        if t.parent is not None:
            depth[t.key] = depth[t.parent] + 1
    steps_per_epoch = -(-(exp.data.train or 0) // exp.train.batch_size)
    finetune_steps = (
        steps_per_epoch * exp.train.epochs * (counts["intermediate"] + counts["target"])
    )
    return {
        "trials": len(trials),
        "pretrain": counts["pretrain"],
        "intermediate": counts["intermediate"],
        "target": counts["target"],
        "naive_grid_intermediate_trainings": len(exp.intermediates)
        * len(exp.seeds)
        * len(exp.targets),
        "dag_depth": max(depth.values()) + 1,
        "optimizer_steps": (exp.pretrain.steps if exp.encoder is None else 0) + finetune_steps
        if exp.data.train is not None
        else "unknown (full training sets; set data.train to size-match)",
        "languages": len({lang for t in exp.targets for lang in exp.languages_of(exp.task(t))}),
    }

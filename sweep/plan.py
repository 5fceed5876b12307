"""The trial DAG: pretrain once, one intermediate training per (task, seed), one target trial per
(intermediate or `none` or `scratch`, seed, target), each keyed by a hash of what determines it.

Identity. A key is the hash of an explicit, versioned dict of what decides a training: its data
(where each split comes from and how much of it), its settings, its head, its parent's key and
TRIAL_VERSION; never `repr()` of an object that may grow fields, never descriptions. Settings
fields of the first identity version are always in it; a field added later is in it only when
set away from its default, so a new field whose default reproduces the old behaviour leaves
every stored key valid.

Shared trainings. Every fine-tuning step of the plan is a training unit: an earlier stage of a
target (`before`, e.g. XCOPA's SIQA, Tatoeba's SQuAD fine-tune), or a target's own training.
Units with the same training identity are one `stage` trial whose whole model (head included)
is the artifact: XQuAD, MLQA and Tatoeba's `before: [xquad]` all read one SQuAD fine-tune per
(parent, seed), and such targets only evaluate (`evaluate_only`).

V-information. The null model of an intermediate (same labels, blank inputs) is its own `null`
trial beside the intermediate, with the pretrained encoder as parent: targets never wait for it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from sweep.config import Experiment
from sweep.schema import BASELINE, SCRATCH
from trainers.mixing import mixture_identity
from trainers.runfiles import TRIAL_KINDS
from trainers.settings import TrainConfig, pretrain_key

# Bump when training or evaluation code changes what a trial with the same identity produces.
TRIAL_VERSION = 1
# TrainConfig fields of identity version 1, always in a key. Fields added later enter a key only
# when set away from their default; checkpoint_every only decides when state is saved.
TRAIN_IDENTITY_V1 = frozenset(
    {
        "lr",
        "epochs",
        "batch_size",
        "eval_batch_size",
        "warmup_ratio",
        "weight_decay",
        "mixed_precision",
        "compile",
        "selection",
    }
)
TRAIN_NOT_IDENTITY = frozenset({"checkpoint_every"})
# Facts of trainers.heads (which imports torch; `itx plan` must not): formats that train a model,
# and formats with gold-label log probabilities (the V-information null model). A test checks
# them against the heads.
TRAINED_FORMATS = frozenset({"classification", "multiple_choice", "tagging", "qa", "dual_encoder"})
LOG_PROB_FORMATS = frozenset({"classification", "multiple_choice"})

Kind = Literal[TRIAL_KINDS]  # one list of kinds, shared with the run-file checks


class TrialSpec(BaseModel):
    """One node of the DAG. `key` addresses its artifacts; `parent` is the key it waits for.

    `task` is the task a `stage` trains; `parent_kind` the kind of the parent's artifact;
    `evaluate_only` marks a target whose training is its parent stage (it only evaluates).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    kind: Kind
    intermediate: str | None = None
    seed: int | None = None
    target_task: str | None = None
    parent: str | None = None
    task: str | None = None
    parent_kind: Kind | None = None
    evaluate_only: bool = False

    @property
    def label(self) -> str:
        parts = [self.kind, self.task, self.intermediate, self.target_task]
        seed = [f"seed={self.seed}"] if self.seed is not None else []
        return "/".join([p for p in parts if p] + seed)


def _hash(identity: Any) -> str:
    # strict JSON: an object without a JSON form is an error here, never its repr() in a key
    payload = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def encoder_key(exp: Experiment) -> str:
    """Stage 0's key: the synthetic pretraining's content hash, or the hub encoder's name."""
    if exp.encoder is not None:
        return _hash(["hub-encoder", exp.encoder.model_dump(), exp.model.max_length])
    return pretrain_key(exp.world, exp.model, exp.pretrain)


def settings_identity(
    model: BaseModel, always: frozenset[str], never: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Fields of a settings model that decide a training: `always` ones at any value, others
    (added after the identity's version) only when away from their default."""
    out = {}
    for name, field in type(model).model_fields.items():
        if name in never:
            continue
        value = getattr(model, name)
        if name in always or value != field.get_default(call_default_factory=True):
            out[name] = value.model_dump() if isinstance(value, BaseModel) else value
    return out


def train_identity(train: TrainConfig) -> dict[str, Any]:
    return settings_identity(train, TRAIN_IDENTITY_V1, TRAIN_NOT_IDENTITY)


@functools.lru_cache(maxsize=4096)
def _source_identity(task_name: str, source: str, overrides_json: str, role: str) -> list:
    """Where a real source's `role` split comes from: sources.yaml resolved with the user's
    overrides (hub id, config, revision, files, split, filters), per part of a concatenation."""
    from trainers.sources import Source
    from trainers.tasks import get_task

    task = get_task(task_name)
    specs = Source(task, json.loads(overrides_json)).specs(role, "en")
    drop = {"source", "key", "role", "cache_dir"}
    return [{k: v for k, v in dataclasses.asdict(s).items() if k not in drop} for s in specs]


def _override(exp: Experiment, source: str) -> dict[str, Any]:
    """The user's data.sources entry of `source` as a plain dict of what was set (typed
    overrides dumped without their defaults: a field added to them later changes no key)."""
    raw = exp.data.sources.get(source)
    if raw is None:
        return {}
    if isinstance(raw, BaseModel):
        return raw.model_dump(mode="json", exclude_defaults=True)
    return dict(raw)


def data_identity(exp: Experiment, name: str) -> dict[str, Any]:
    """What decides the English train and dev examples a training of task `name` sees."""
    sizes = {"train_size": exp.data.train, "dev_size": exp.data.dev}
    if name in exp.mixtures:  # trainers.mixing: its members' identities and temperature
        member = functools.partial(data_identity, exp)
        return {**mixture_identity(exp.mixtures[name], member), **sizes}
    task = exp.task(name)
    if exp.data.source == "hub":
        overrides = json.dumps({task.source: _override(exp, task.source)}, sort_keys=True)
        where = {
            role: _source_identity(task.name, task.source, overrides, role)
            for role in ("train", "dev")
        }
        return {"source": "hub", **where, **sizes}
    # trainers.synthetic keys train/dev examples by generator and declared training sets, and
    # label noise by the task's name
    return {
        "source": "synthetic",
        "generator": task.synthetic,
        "train_data": list(task.train_data),
        "noise": task.noise,
        "noise_key": task.name if task.noise > 0 else None,
        **sizes,
    }


def training_identity(
    exp: Experiment, name: str, parent: str, seed: int, init: str
) -> dict[str, Any]:
    """One fine-tuning of task `name` from the artifact `parent`: `init` is "encoder" (the
    parent's encoder), "random" (the scratch control) or "stage" (the parent stage's model)."""
    task = exp.task(name)
    return {
        "version": TRIAL_VERSION,
        "parent": parent,
        "init": init,
        "seed": seed,
        "format": task.format,
        "labels": list(task.labels),
        "data": data_identity(exp, name),
        "train": train_identity(exp.train_for(name)),
        "max_length": exp.max_length_for(name),
        # the health rule decides which restart a trial keeps; added after version 1, so only
        # settings away from the defaults enter the key
        **({"health": health} if (health := settings_identity(exp.health, frozenset())) else {}),
    }


def evaluation_identity(exp: Experiment, name: str) -> dict[str, Any]:
    """What decides a target's scores beyond its training: test data, languages, metric."""
    task = exp.task(name)
    return {
        "name": name,  # rows carry the target's name
        "source": task.source if exp.data.source == "hub" else task.synthetic,
        "overrides": _override(exp, task.source) if exp.data.source == "hub" else None,
        "test": exp.data.test,
        "languages": sorted(exp.languages_of(task)),
        "metric": task.metric_family,
        "layer": task.layer,
        "max_length": exp.max_length_for(name),
        "eval_batch_size": exp.train_for(name).eval_batch_size,
    }


def has_null_model(exp: Experiment, name: str) -> bool:
    return exp.difficulty.pvi and exp.task(name).format in LOG_PROB_FORMATS


@dataclasses.dataclass
class _Target:
    name: str
    parent: str  # the intermediate, `none` or `scratch`
    seed: int
    after: str  # key of the artifact its own training starts from
    after_kind: str
    init: str
    own: str | None  # training key of its own training; None: its format does not train


def build_plan(exp: Experiment) -> list[TrialSpec]:
    """Trials in an order where every parent comes before its children."""
    pre = TrialSpec(key=encoder_key(exp), kind="pretrain")
    trials = [pre]
    encoders = {}
    for seed in exp.seeds:
        for name in exp.intermediates:
            training = training_identity(exp, name, pre.key, seed, "encoder")
            common = {"intermediate": name, "seed": seed, "parent": pre.key}
            spec = TrialSpec(
                key=_hash({"kind": "intermediate", "name": name, "training": training}),
                kind="intermediate",
                parent_kind="pretrain",
                **common,
            )
            encoders[name, seed] = spec.key
            trials.append(spec)
            if has_null_model(exp, name):
                null = {"kind": "null", "name": name, "training": training, "blank": True}
                trials.append(
                    TrialSpec(key=_hash(null), kind="null", parent_kind="pretrain", **common)
                )
    stages: dict[str, TrialSpec] = {}
    targets: list[_Target] = []
    parents = [BASELINE, *([SCRATCH] if exp.controls.scratch else []), *exp.intermediates]
    for seed in exp.seeds:
        for parent in parents:
            start = encoders.get((parent, seed), pre.key)
            start_kind = "intermediate" if (parent, seed) in encoders else "pretrain"
            for target in exp.targets:
                key, kind = start, start_kind
                init = "random" if parent == SCRATCH else "encoder"
                for stage in exp.task(target).before:
                    training = training_identity(exp, stage, key, seed, init)
                    stage_key = _hash({"kind": "stage", "training": training})
                    stages.setdefault(
                        stage_key,
                        TrialSpec(
                            key=stage_key,
                            kind="stage",
                            task=stage,
                            intermediate=parent,
                            seed=seed,
                            parent=key,
                            parent_kind=kind,
                        ),
                    )
                    key, kind, init = stage_key, "stage", "stage"
                own = None
                if exp.task(target).format in TRAINED_FORMATS:
                    training = training_identity(exp, target, key, seed, init)
                    own = _hash({"kind": "stage", "training": training})
                targets.append(_Target(target, parent, seed, key, kind, init, own))
    # a target's own training that another target or a stage also does becomes a shared stage
    uses = Counter(t.own for t in targets if t.own is not None)
    for t in targets:
        if t.own is not None and (uses[t.own] > 1 or t.own in stages):
            stages.setdefault(
                t.own,
                TrialSpec(
                    key=t.own,
                    kind="stage",
                    task=t.name,
                    intermediate=t.parent,
                    seed=t.seed,
                    parent=t.after,
                    parent_kind=t.after_kind,
                ),
            )
    trials.extend(_parents_first(list(stages.values())))
    for t in targets:
        shared = t.own in stages
        trained_by = t.own if shared else t.after
        training = (
            None
            if shared or t.own is None
            else training_identity(exp, t.name, t.after, t.seed, t.init)
        )
        identity = {
            "kind": "target",
            "version": TRIAL_VERSION,
            "after": trained_by,
            "training": training,
            "evaluation": evaluation_identity(exp, t.name),
        }
        trials.append(
            TrialSpec(
                key=_hash(identity),
                kind="target",
                intermediate=t.parent,
                seed=t.seed,
                target_task=t.name,
                parent=trained_by,
                parent_kind="stage" if shared else t.after_kind,
                evaluate_only=shared or t.own is None,
            )
        )
    return trials


def _parents_first(stages: list[TrialSpec]) -> list[TrialSpec]:
    """Stages whose parent is another stage after that stage (chains of `before`)."""
    keys = {s.key for s in stages}
    placed: set[str] = set()
    out: list[TrialSpec] = []
    pending = stages
    while pending:
        ready = [s for s in pending if s.parent not in keys or s.parent in placed]
        out.extend(ready)
        placed.update(s.key for s in ready)
        pending = [s for s in pending if s.key not in placed]
    return out


def trainings(exp: Experiment, trials: list[TrialSpec]) -> dict[str, int]:
    """Fine-tunings the plan runs, against the same plan without shared stages (every target
    training itself and each of its `before` stages): what deduplication saves."""
    counts = Counter(t.kind for t in trials)
    after = counts["intermediate"] + counts["null"] + counts["stage"]
    after += sum(1 for t in trials if t.kind == "target" and not t.evaluate_only)
    before = counts["intermediate"] + counts["null"]
    for t in trials:
        if t.kind == "target":
            task = exp.task(t.target_task or "")
            before += len(task.before) + (task.format in TRAINED_FORMATS)
    return {"before": before, "after": after, "saved": before - after}


def summarize_plan(exp: Experiment, trials: list[TrialSpec]) -> dict[str, object]:
    """Counts per stage and the DAG depth, for `itx plan` (estimates: sweep.estimate)."""
    counts = Counter(t.kind for t in trials)
    depth = {t.key: 0 for t in trials}
    for t in trials:
        if t.parent is not None:
            depth[t.key] = depth[t.parent] + 1
    done = trainings(exp, trials)
    return {
        "trials": len(trials),
        **{kind: counts[kind] for kind in ("pretrain", "intermediate", "null", "stage", "target")},
        "trainings": f"{done['after']} ({done['before']} without shared stages; "
        f"{done['saved']} saved)",
        "naive_grid_intermediate_trainings": len(exp.intermediates)
        * len(exp.seeds)
        * len(exp.targets),
        "dag_depth": max(depth.values()) + 1,
        "languages": len({lang for t in exp.targets for lang in exp.languages_of(exp.task(t))}),
    }

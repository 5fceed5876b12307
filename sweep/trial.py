"""What one trial does, without Ray: idempotent, content-addressed, resumable.

`execute` is the whole trial; the Tune trainable (`sweep.trainable`) only wraps it. A trial whose
artifact has a DONE marker returns its stored rows and trains nothing. Otherwise it pretrains
(stage 0), or fine-tunes: load the data (trainers.data), train and evaluate (a
trainers.finetune.FineTune, checked by trainers.health and restarted under `health.policy`), hand
the model on, write the rows. The null model of V-information is a fine-tune on blank inputs;
what the measures compute is in trainers.difficulty. Training state lives under
<root>/scratch/<key>, keyed by content, so a retry on any node resumes from the last save.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

import trainers.data
from sweep.config import Experiment
from sweep.node import sweep_node, temp_dir
from sweep.plan import TrialSpec, encoder_key
from sweep.rows import fit_columns, fit_records, no_rows, result_rows
from sweep.schema import (
    BASELINE,
    SCRATCH,
)
from sweep.store import ResultsStore
from sweep.uploader import DISCARDED_STATES, TrainingState, discard_state
from trainers.data import DataSource
from trainers.difficulty import has_log_probs, judge_null_model, mean_log2_prob, task_embedding
from trainers.finetune import FineTune, load_stage_model, write_encoder, write_stage_model
from trainers.tasks import Task, TaskData

if TYPE_CHECKING:
    from trainers.loop import Outcome

log = logging.getLogger(__name__)


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def execute(
    spec: TrialSpec,
    exp: Experiment,
    store: ResultsStore,
    threads: int = 1,
    info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Run one trial (or reuse its finished artifact) and return its result rows.

    `info`, when given, receives `reused` and `resumed_from_step` (0: trained from the start).
    """
    import torch

    info = {} if info is None else info
    info.update(reused=False, resumed_from_step=0)
    sweep_node()  # folders of trials killed on this node (state, encoders) go before any work
    torch.set_num_threads(threads)  # one trial per core: more threads than cores is 20-40x slower
    if store.is_done(spec):
        info["reused"] = True
        store.publish(spec)
        return store.read_rows(spec) if spec.kind != "pretrain" else pd.DataFrame()
    if spec.kind == "pretrain":
        _pretrain(spec, exp, store, threads)
        return pd.DataFrame()
    discarded = DISCARDED_STATES[0]
    try:
        with contextlib.ExitStack() as hold:  # the parent encoder's node-local copy, while in use
            if spec.kind == "null":
                rows, fits = _null_model(spec, exp, store, info, hold)
            else:
                rows, fits = _fine_tune(spec, exp, store, info, hold)
    finally:  # a failed trial's record counts them too
        info["discarded_states"] = DISCARDED_STATES[0] - discarded
    store.write_rows(spec, rows, fits)
    for part in (spec, *parts_of(spec, exp)):  # resume state is only needed until DONE
        store.delete_dir(store.scratch(part))
    return rows


def _pretrain(spec: TrialSpec, exp: Experiment, store: ResultsStore, threads: int) -> None:
    """Stage 0: the synthetic encoder (pretrained, cached by content) or the hub encoder, copied
    to the store so that every node reads the same folder."""
    from trainers.encoder import cached_pretrained, fetch_hub_encoder

    if exp.encoder is not None:
        with temp_dir("hub-encoder-") as local:
            fetch_hub_encoder(exp.encoder.name, exp.encoder.revision, local)
            store.upload_dir(local, store.artifact(spec))
    else:
        local = cached_pretrained(exp.world, exp.model, exp.pretrain, threads=threads)
        store.upload_dir(local, store.artifact(spec))
    store.mark_done(spec)  # DONE last: upload_dir never copies a local DONE


def data_source(exp: Experiment) -> DataSource:
    """Where this study's examples come from and how many (trainers.data)."""
    members = {m for mixture in exp.mixtures.values() for m in mixture.tasks}
    return DataSource(
        source=exp.data.source,
        train=exp.data.train,
        dev=exp.data.dev,
        test=exp.data.test,
        world=exp.world,
        overrides=exp.data.sources,
        mixtures=exp.mixtures,
        tasks={name: exp.task(name) for name in sorted(members)},
    )


def load_data(
    exp: Experiment, task: Task, seed: int, languages: tuple[str, ...] = ()
) -> tuple[Task, TaskData]:
    """A task's data for one trial of this study (trainers.data.load_data)."""
    return trainers.data.load_data(data_source(exp), task, seed, languages)


def _fine_tune(
    spec: TrialSpec,
    exp: Experiment,
    store: ResultsStore,
    info: dict[str, Any],
    hold: contextlib.ExitStack,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train the trial (a stage, an intermediate or a target; a target whose training is a
    shared stage only evaluates), checked by trainers.health and restarted under `exp.health`;
    returns its rows and its fits. Earlier stages and null models are trials of their own. The
    parent's node-local copy is held by `hold`."""
    assert spec.parent is not None and spec.seed is not None  # guaranteed by build_plan
    parent_kind = spec.parent_kind or "pretrain"
    why = _skip_reason(spec, exp, store, parent_kind)
    if why:  # never trained on a broken encoder: skipped, and said so in its fits
        return _skipped(spec, store, why)
    encoder = hold.enter_context(store.local_copy(store.artifact_of(parent_kind, spec.parent)))
    name = {"intermediate": spec.intermediate, "stage": spec.task}.get(spec.kind, spec.target_task)
    task = exp.task(name or "")
    languages = exp.languages_of(task) if spec.kind == "target" else ()
    task, data = load_data(exp, task, spec.seed, languages)
    # the scratch control's first training starts from random weights; later ones from a stage
    scratch = spec.intermediate == SCRATCH and parent_kind == "pretrain"
    run = _fine_tune_of(
        exp,
        task,
        encoder,
        random_init=scratch,
        init_model=load_stage_model(encoder) if parent_kind == "stage" else None,
        train=not spec.evaluate_only,
    )
    fits: list[dict[str, Any]] = []
    outcome = _checked(spec, exp, store, "main", run, data, fits=fits, info=info)
    if spec.evaluate_only and parent_kind == "stage":  # trained by the stage: its size
        outcome.n_train = json.loads((encoder / "metrics.json").read_text())["n_train"]
    if outcome.data_issues:  # counted, never silently dropped: the report lists them
        store.write_json(
            f"data_issues/{spec.key}.json", {"trial": spec.label, "issues": outcome.data_issues}
        )
    baseline = spec.kind == "intermediate" or (
        spec.kind == "target" and spec.intermediate == BASELINE
    )
    if exp.difficulty.similarity and baseline:  # TextEmb: under the pretrained encoder
        pretrained = encoder if parent_kind == "pretrain" else None  # else: after a stage
        _write_task_embedding(store, exp, task, data, pretrained, hold)
    fit = fit_columns(spec, fits)
    if spec.kind == "stage":  # the whole model, head included: its targets continue from it
        _save_stage(outcome, encoder, store, spec)
        scores = {"en": outcome.dev}
        rows = result_rows(
            spec, exp, task, outcome, scores=scores, split="dev", sha="stage", fit=fit
        )
        return rows.assign(target_task=spec.task), fit_records(spec, fits)
    if spec.kind == "intermediate":
        dev = {"en": {**outcome.dev, **_difficulty(exp, task, outcome)}}
        written_sha = _save_intermediate(outcome, encoder, store, spec)
        rows = result_rows(
            spec, exp, task, outcome, scores=dev, split="dev", sha=written_sha, fit=fit
        )
        return rows, fit_records(spec, fits)
    # proves which encoder this trial read; the control reads none
    read_sha = "random" if scratch else file_sha(encoder / "model.safetensors")
    rows = result_rows(
        spec,
        exp,
        task,
        outcome,
        scores=outcome.test,
        split="test",
        sha=read_sha,
        majority=outcome.majority,
        fit=fit,
    )
    return rows, fit_records(spec, fits)


def _fine_tune_of(exp: Experiment, task: Task, encoder: Path, **start: Any) -> FineTune:
    """The study's fine-tuning of `task` from `encoder`; `start` sets what the model starts from
    (random_init, init_model), blank_inputs or train (trainers.finetune.FineTune)."""
    return FineTune(
        task=task,
        encoder=encoder,
        config=exp.train_for(task.name),
        max_length=exp.max_length_for(task.name),
        cpu=exp.resources.gpu == 0,
        max_malformed=exp.data.max_malformed,
        **start,
    )


def _difficulty(exp: Experiment, task: Task, outcome: Outcome) -> dict[str, float]:
    """An intermediate's difficulty measures beside its English dev score: `log2_prob`, the
    model's half of V-information (the null trial records the other half)."""
    if not (exp.difficulty.pvi and has_log_probs(task)):
        return {}
    return {"log2_prob": mean_log2_prob(task, outcome, exp.train.eval_batch_size)}


def attempt_part(part: str, attempt: int) -> str | None:
    """Resume identity of a fine-tune attempt within its trial: the trial's own state for the
    first main one, `stage-0`, `null`, then `main-restart-1`, `stage-0-restart-2`..."""
    name = part if attempt == 0 else f"{part}-restart-{attempt}"
    return None if name == "main" else name


def _checked(
    spec: TrialSpec,
    exp: Experiment,
    store: ResultsStore,
    part: str,
    run: FineTune,
    data: TaskData,
    *,
    fits: list[dict[str, Any]],
    info: dict[str, Any],
) -> Outcome:
    """One fine-tune, checked; under the `restart` policy a degenerate one is trained again with
    the next restart seed (each attempt its own resumable state: a kill mid-restart resumes it)."""
    from trainers.health import check_outcome, restart_seed

    policy = exp.health
    attempts = policy.restarts + 1 if policy.policy == "restart" else 1
    for attempt in range(attempts):
        seed = restart_seed(spec.seed, attempt)
        name = attempt_part(part, attempt)
        with _training_state(
            spec if name is None else part_of(spec, name), exp, store, info
        ) as state:
            if state.resumed_from:
                log.info("trial %s (%s) resumes from step %d", spec.label, name, state.resumed_from)
                info["resumed_from_step"] = state.resumed_from
                info["resumed_part"] = name or "main"
            outcome = _train(run, data, seed=seed, state_dir=state.path, on_save=state.on_save)
        verdict, record = check_outcome(outcome, run.task, policy.alpha)
        fits.append({**record, "part": part, "attempt": attempt, "restart_seed": seed})
        if verdict.healthy:
            break
        log.warning("trial %s (%s, attempt %d): %s", spec.label, part, attempt, verdict.reason)
    fits[-1]["kept"] = True
    return outcome


def _training_state(
    state_spec: TrialSpec, exp: Experiment, store: ResultsStore, info: dict[str, Any]
) -> TrainingState:
    """The resumable state folder of one fine-tune; every attempt pushes its final state (a
    later restart may be killed). Uploads are tallied in `info`, summed over the parts."""
    tally: dict[str, int] = info.setdefault("state_uploads", {})
    every = exp.resources.state_upload_every_s
    return TrainingState(state_spec, store, every=every, final_push=True, tally=tally)


def _train(
    run: FineTune,
    data: TaskData,
    *,
    seed: int,
    state_dir: Path,
    on_save: Callable[[Path, bool], None] | None = None,
) -> Outcome:
    """The fine-tune, resuming from `state_dir`; a saved state that cannot be loaded is
    discarded and the training starts afresh (every retry would fail alike)."""
    from trainers.loop import CorruptState

    try:
        return run.run(data, seed=seed, state_dir=state_dir, on_save=on_save)
    except CorruptState as err:
        discard_state(state_dir, err)
        return run.run(data, seed=seed, state_dir=state_dir, on_save=on_save)


def _skip_reason(
    spec: TrialSpec, exp: Experiment, store: ResultsStore, parent_kind: str
) -> str | None:
    """Why this trial must not train on its parent (None: it may): an unhealthy intermediate or
    stage (under health.policy restart), or a stage that was itself skipped."""
    if parent_kind not in ("intermediate", "stage"):
        return None
    if parent_kind == "stage":
        reason = store.skipped_reason(store.artifact_of("stage", spec.parent or ""))
        if reason is not None:
            return f"its stage was skipped ({reason})"
    if exp.health.policy != "restart":
        return None
    parent = spec.model_copy(update={"kind": parent_kind, "key": spec.parent})
    rows = store.read_rows(parent)
    if rows.empty or "healthy" not in rows or rows["healthy"].all():
        return None
    if parent_kind == "stage":  # the stage's rows name its task as their target
        return f"its stage {rows['target_task'].iloc[0]} did not learn (unhealthy, excluded)"
    return f"intermediate {spec.intermediate} seed {spec.seed} is unhealthy (excluded)"


def _skipped(spec: TrialSpec, store: ResultsStore, why: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """No rows, a fit that says why, and the reason beside DONE for `itx status` and for the
    trials that continue from this one (a skipped stage skips its targets)."""
    log.warning("trial %s skipped: %s", spec.label, why)
    store.mark_skipped(spec, why)
    from trainers.health import skipped_record

    fit = {**skipped_record(why), "part": "main", "attempt": -1, "restart_seed": -1, "kept": True}
    return no_rows(), fit_records(spec, [fit])


def part_of(spec: TrialSpec, part: str) -> TrialSpec:
    """The resume identity of one part of a trial (an earlier stage, the V-information null
    model): its own state folder, uploaded to object stores like the trial's own."""
    return spec.model_copy(update={"key": f"{spec.key}-{part}"})


def parts_of(spec: TrialSpec, exp: Experiment) -> list[TrialSpec]:
    """Every resume identity of this trial besides its own state: the restarts of its fine-tune
    (earlier stages and null models are trials of their own, sweep.plan)."""
    if spec.kind in ("pretrain", "null"):
        return []
    names = [attempt_part("main", a) for a in range(exp.health.restarts + 1)]
    return [part_of(spec, n) for n in names if n is not None]


def _null_model(
    spec: TrialSpec,
    exp: Experiment,
    store: ResultsStore,
    info: dict[str, Any],
    hold: contextlib.ExitStack,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The V-information null model of an intermediate: the same training on the same labels
    with blank inputs, from the pretrained encoder, as a trial beside the intermediate (its
    targets never wait for it). Rows: `null_log2_prob` of the English dev set, in bits.

    Recorded in the fits but never restarted (trainers.difficulty.judge_null_model)."""
    from trainers.health import check_outcome

    assert spec.parent is not None and spec.seed is not None and spec.intermediate
    encoder = hold.enter_context(store.local_copy(store.artifact_of("pretrain", spec.parent)))
    task, data = load_data(exp, exp.task(spec.intermediate), spec.seed)
    run = _fine_tune_of(exp, task, encoder, blank_inputs=True)
    with _training_state(spec, exp, store, info) as state:
        info["resumed_from_step"] = state.resumed_from
        null = _train(run, data, seed=spec.seed, state_dir=state.path, on_save=state.on_save)
    _, record = check_outcome(null, task, exp.health.alpha)
    record = judge_null_model(record)
    fits = [{**record, "part": "main", "attempt": 0, "restart_seed": spec.seed, "kept": True}]
    dev = {"en": {"null_log2_prob": mean_log2_prob(task, null, exp.train.eval_batch_size)}}
    sha = file_sha(encoder / "model.safetensors")  # the pretrained encoder it started from
    fit = fit_columns(spec, fits)
    rows = result_rows(spec, exp, task, null, scores=dev, split="dev", sha=sha, fit=fit)
    return rows.assign(primary=False), fit_records(spec, fits)


def _save_stage(outcome: Outcome, encoder: Path, store: ResultsStore, spec: TrialSpec) -> None:
    """The stage's whole model, its tokenizer and its English size; DONE follows with the rows."""
    with temp_dir("stage-") as out:
        write_stage_model(outcome, encoder, out)
        store.upload_dir(out, store.artifact(spec))


def _save_intermediate(
    outcome: Outcome, encoder: Path, store: ResultsStore, spec: TrialSpec
) -> str:
    """The fine-tuned encoder without its head; returns the sha of the weights written. DONE
    follows, with the rows (write_rows)."""
    with temp_dir("encoder-") as out:
        write_encoder(outcome, encoder, out)
        written_sha = file_sha(out / "model.safetensors")
        store.upload_dir(out, store.artifact(spec))
    return written_sha


def _write_task_embedding(
    store: ResultsStore,
    exp: Experiment,
    task: Task,
    data: TaskData,
    pretrained: Path | None,
    hold: contextlib.ExitStack,
) -> None:
    """The task's TextEmb under the pretrained encoder (None: fetched, held by `hold`), once
    per task (rewrites are equal)."""
    path = f"task_embeddings/{task.name}.json"
    if store.exists(store.path(path)):  # store_path: a task name cannot leave the run folder
        return
    if pretrained is None:  # a baseline target after a stage (XQuAD, XCOPA)
        pretrained = hold.enter_context(
            store.local_copy(store.artifact_of("pretrain", encoder_key(exp)))
        )
    embedding = task_embedding(task, data, pretrained, exp.model.max_length)
    if embedding is not None:
        store.write_json(path, embedding)

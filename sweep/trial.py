"""What one trial does, without Ray: idempotent, content-addressed, resumable.

`execute` is the whole trial; the Tune trainable (`sweep.trainable`) only wraps it. A trial whose
artifact has a DONE marker returns its stored rows and trains nothing. Training state lives under
<root>/scratch/<key>, keyed by content, so a retry on any node resumes from the last save.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sweep.config import Experiment
from sweep.node import sweep_node, temp_dir
from sweep.plan import BASELINE, SCRATCH, TrialSpec
from sweep.store import ResultsStore
from sweep.uploader import TrainingState
from trainers.mixing import mix
from trainers.tasks import Task

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
    with contextlib.ExitStack() as hold:  # the parent encoder's node-local copy, while in use
        rows = _fine_tune(spec, exp, store, info, hold)
    store.write_rows(spec, rows)
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


def load_data(
    exp: Experiment, task: Task, seed: int, languages: tuple[str, ...]
) -> tuple[Task, dict]:
    """A task's data for one trial: synthetic or real, a mixture's sampled union, size-matched.

    Returns the task too: real data can complete it (CCG's tag set comes from its training data).
    """
    if task.name in exp.mixtures:
        mixture = exp.mixtures[task.name]
        parts = {name: load_data(exp, exp.task(name), seed, ())[1] for name in mixture.tasks}
        train = mix(
            {n: d["train"]["en"] for n, d in parts.items()},
            exp.data.train,
            mixture.temperature,
            seed,
        )
        dev = [e for name in sorted(parts) for e in parts[name]["dev"]["en"]]
        return task, {"train": {"en": train}, "dev": {"en": dev}, "test": {}}
    if exp.data.source == "hub":
        from trainers.sources import load_task_data

        return load_task_data(
            task,
            languages,
            train_size=exp.data.train,
            seed=seed,
            overrides=exp.data.sources,
            dev_size=exp.data.dev,
            test_size=exp.data.test,
        )
    from trainers.synthetic import task_data
    from trainers.tasks import SplitSizes
    from trainers.world import World

    sizes = SplitSizes(exp.data.train, exp.data.dev, exp.data.test)
    return task, task_data(World(exp.world), task, sizes, languages)


def _fine_tune(
    spec: TrialSpec,
    exp: Experiment,
    store: ResultsStore,
    info: dict[str, Any],
    hold: contextlib.ExitStack,
) -> pd.DataFrame:
    from trainers.encoder import save_encoder
    from trainers.heads import encoder_of

    assert spec.parent is not None and spec.seed is not None  # guaranteed by build_plan
    parent_kind = "intermediate" if spec.kind == "target" and _has_encoder(spec) else "pretrain"
    encoder = hold.enter_context(store.local_copy(store.artifact_of(parent_kind, spec.parent)))
    task = exp.task(spec.intermediate if spec.kind == "intermediate" else spec.target_task)
    languages = exp.languages_of(task) if spec.kind == "target" else ()
    scratch = spec.intermediate == SCRATCH
    extra: dict[str, float] = {}
    every = exp.resources.state_upload_every_s
    tally: dict[str, int] = info.setdefault("state_uploads", {})  # summed over the parts
    with TrainingState(spec, store, every, tally=tally) as state:
        info["resumed_from_step"] = state.resumed_from
        if state.resumed_from:
            log.info("trial %s resumes from step %d", spec.key, state.resumed_from)
        model = None
        for i, name in enumerate(task.before):  # earlier stages (XCOPA: SIQA), own state
            stage, stage_data = load_data(exp, exp.task(name), spec.seed, ())
            stage_spec = part_of(spec, f"stage-{i}")
            with TrainingState(stage_spec, store, every, True, tally) as stage_state:
                stage_outcome = _train(
                    exp,
                    stage,
                    stage_data,
                    encoder,
                    stage_state.path,
                    spec.seed,
                    scratch and i == 0,
                    model,
                    on_save=stage_state.on_save,
                )
            model = stage_outcome.model
        task, data = load_data(exp, task, spec.seed, languages)
        outcome = _train(
            exp,
            task,
            data,
            encoder,
            state.path,
            spec.seed,
            scratch and model is None,
            model,
            on_save=state.on_save,
        )
        if spec.kind == "intermediate" and exp.difficulty.pvi and _has_log_probs(task):
            with TrainingState(part_of(spec, "null"), store, every, True, tally) as null_state:
                extra["v_information"] = _v_information(
                    exp, task, data, encoder, null_state, spec.seed, outcome
                )
    if outcome.data_issues:  # counted, never silently dropped: the report lists them
        store.write_json(
            f"data_issues/{spec.key}.json", {"trial": spec.label, "issues": outcome.data_issues}
        )
    if exp.difficulty.similarity and parent_kind == "pretrain" and not scratch:
        _write_task_embedding(store, exp, task, data, encoder)
    if spec.kind == "intermediate":
        from trainers.encoder import load_tokenizer

        with temp_dir("encoder-") as out:  # DONE follows, with the rows (write_rows)
            save_encoder(encoder_of(outcome.model), load_tokenizer(encoder), out)  # no head
            metrics = json.dumps({"dev": outcome.dev, "steps": outcome.steps})
            (out / "metrics.json").write_text(metrics)
            written_sha = file_sha(out / "model.safetensors")
            store.upload_dir(out, store.artifact(spec))
        dev = {"en": {**outcome.dev, **extra}}
        return _rows(spec, exp, task, dev, {}, outcome, written_sha, "dev")
    # proves which encoder this trial read; the control reads none
    read_sha = "random" if scratch else file_sha(encoder / "model.safetensors")
    return _rows(spec, exp, task, outcome.test, outcome.majority, outcome, read_sha, "test")


def _train(
    exp: Experiment,
    task: Task,
    data: dict,
    encoder: Path,
    state_dir: Path,
    seed: int,
    random_init: bool,
    init_model: Any,
    blank_inputs: bool = False,
    on_save: Any = None,
) -> Any:
    from trainers.loop import train_and_evaluate

    return train_and_evaluate(
        task,
        data,
        encoder,
        exp.train_for(task.name),
        seed=seed,
        max_length=exp.max_length_for(task.name),
        state_dir=state_dir,
        random_init=random_init,
        cpu=exp.resources.gpu == 0,
        progress_bar=False,  # inside Tune, its status table is the progress view
        max_malformed=exp.data.max_malformed,
        init_model=init_model,
        blank_inputs=blank_inputs,
        on_save=on_save,  # the uploader's hook on object stores (sweep.uploader)
    )


def part_of(spec: TrialSpec, part: str) -> TrialSpec:
    """The resume identity of one part of a trial (an earlier stage, the V-information null
    model): its own state folder, uploaded to object stores like the trial's own."""
    return spec.model_copy(update={"key": f"{spec.key}-{part}"})


def parts_of(spec: TrialSpec, exp: Experiment) -> list[TrialSpec]:
    """Every part `_fine_tune` may have trained for this trial: stages, then the null model."""
    if spec.kind == "pretrain":
        return []
    name = spec.intermediate if spec.kind == "intermediate" else spec.target_task
    stages = [part_of(spec, f"stage-{i}") for i in range(len(exp.task(name).before))]
    return [*stages, part_of(spec, "null")] if spec.kind == "intermediate" else stages


def _has_log_probs(task: Task) -> bool:
    from trainers.heads import Format, get_format

    return type(get_format(task.format)).gold_log2_probs is not Format.gold_log2_probs


def _v_information(
    exp: Experiment,
    task: Task,
    data: dict,
    encoder: Path,
    null_state: TrainingState,
    seed: int,
    outcome: Any,
) -> float:
    """V-usable information of the English dev set: the intermediate model against the same
    model trained on the same labels with blank inputs (its own resumable state folder)."""
    from trainers.difficulty import model_log2_probs, v_information
    from trainers.heads import get_format

    null = _train(
        exp,
        task,
        data,
        encoder,
        null_state.path,
        seed,
        False,
        None,
        blank_inputs=True,
        on_save=null_state.on_save,
    )
    fmt = get_format(task.format)
    batch = exp.train.eval_batch_size
    return v_information(
        model_log2_probs(fmt, task, outcome.model, outcome.dev_set, batch),
        model_log2_probs(fmt, task, null.model, null.dev_set, batch),
    )


EMBEDDING_TEXTS = 256  # inputs averaged into a task embedding (TextEmb)


def _write_task_embedding(
    store: ResultsStore, exp: Experiment, task: Task, data: dict, encoder: Path
) -> None:
    """The task's TextEmb under the pretrained encoder, once per task (rewrites are equal)."""
    from trainers.difficulty import text_embedding
    from trainers.heads.base import text_of

    path = f"task_embeddings/{task.name}.json"
    if store.exists(f"{store.run}/{path}"):
        return
    examples = data.get("train", {}).get("en") or next(iter(data.get("test", {}).values()), [])
    texts = [text_of(e) for e in examples[:EMBEDDING_TEXTS]]
    texts = [t for t in texts if t.strip()]
    if not texts:
        return
    vector = text_embedding(encoder, texts, exp.model.max_length)
    store.write_json(path, {"task": task.name, "n_texts": len(texts), "vector": vector.tolist()})


def _has_encoder(spec: TrialSpec) -> bool:
    return spec.intermediate not in (BASELINE, SCRATCH)


def _rows(
    spec: TrialSpec,
    exp: Experiment,
    task: object,
    scores: dict[str, dict[str, float]],
    majority: dict[str, dict[str, float]],
    outcome: object,
    sha: str,
    split: str,
) -> pd.DataFrame:
    from trainers.metrics import primary_metric
    from trainers.tasks import shares_training_data

    primary = primary_metric(task.metric_family)
    shared = (
        spec.kind == "target"
        and spec.intermediate not in (BASELINE, SCRATCH)
        and shares_training_data(exp.task(spec.intermediate), task)
    )
    records = []
    for lang, by_metric in scores.items():
        for metric, value in by_metric.items():
            records.append(
                {
                    "kind": spec.kind,
                    "intermediate": spec.intermediate,
                    "seed": spec.seed,
                    "target_task": spec.target_task,
                    "language": lang,
                    "split": split,
                    "metric": metric,
                    "value": float(value),
                    "n_examples": outcome.n_dev if split == "dev" else outcome.n_test[lang],
                    "primary": metric == primary,
                    "chance": task.chance if metric == "accuracy" else np.nan,
                    "majority": majority.get(lang, {}).get(metric, np.nan),
                    "train_size": outcome.n_train,  # after size matching, malformed dropped
                    "trial_key": spec.key,
                    "encoder_sha": sha,
                    "seconds": outcome.seconds,
                    "shared_training_data": shared,
                }
            )
    frame = pd.DataFrame.from_records(records)
    return frame.astype({"seed": "int64", "n_examples": "int64", "train_size": "int64"})

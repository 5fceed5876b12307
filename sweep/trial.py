"""What one trial does, without Ray: idempotent, content-addressed, resumable.

`execute` is the whole trial; the Tune trainable (`sweep.trainable`) only wraps it. A trial whose
artifact has a DONE marker returns its stored rows and trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from sweep.config import Experiment
from sweep.plan import SCRATCH, TrialSpec
from sweep.store import ResultsStore

log = logging.getLogger(__name__)


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def execute(
    spec: TrialSpec, exp: Experiment, store: ResultsStore, threads: int = 1
) -> pd.DataFrame:
    """Run one trial (or reuse its finished artifact) and return its result rows."""
    import torch

    torch.set_num_threads(threads)  # one trial per core: more threads than cores is 20-40x slower
    if store.is_done(spec):
        store.publish(spec)
        return store.read_rows(spec) if spec.kind != "pretrain" else pd.DataFrame()
    if spec.kind == "pretrain":
        _pretrain(spec, exp, store, threads)
        return pd.DataFrame()
    rows = _fine_tune(spec, exp, store)
    store.write_rows(spec, rows)
    store.delete_dir(store.scratch(spec))  # resume state is only needed until DONE
    return rows


def _pretrain(spec: TrialSpec, exp: Experiment, store: ResultsStore, threads: int) -> None:
    from trainers.encoder import cached_pretrained

    local = cached_pretrained(exp.world, exp.model, exp.pretrain, threads=threads)
    store.upload_dir(local, store.artifact(spec))
    store.mark_done(spec)


def _fine_tune(spec: TrialSpec, exp: Experiment, store: ResultsStore) -> pd.DataFrame:
    from trainers.encoder import save_encoder
    from trainers.loop import train_and_evaluate
    from trainers.tasks import SplitSizes, get_task, task_data
    from trainers.world import World

    assert spec.parent is not None and spec.seed is not None  # guaranteed by build_plan
    parent_kind = "intermediate" if spec.kind == "target" and _has_encoder(spec) else "pretrain"
    encoder = store.local_dir(store.artifact_of(parent_kind, spec.parent))
    task = get_task(spec.intermediate if spec.kind == "intermediate" else spec.target_task)
    world = World(exp.world)
    languages = exp.languages if spec.kind == "target" else ("en",)
    data = task_data(world, task, SplitSizes(**exp.data.model_dump()), languages)
    state = _state_dir(spec, store)
    outcome = train_and_evaluate(
        task,
        data,
        encoder,
        exp.train,
        seed=spec.seed,
        max_length=exp.model.max_length,
        state_dir=state,
        random_init=spec.intermediate == SCRATCH,
        cpu=exp.resources.gpu == 0,
        progress_bar=False,  # inside Tune, its status table is the progress view
    )
    if spec.kind == "intermediate":
        from trainers.encoder import load_tokenizer

        out = Path(tempfile.mkdtemp(prefix="itx-encoder-"))
        save_encoder(outcome.model.roberta, load_tokenizer(encoder), out)  # encoder only, no head
        (out / "metrics.json").write_text(json.dumps({"dev": outcome.dev, "steps": outcome.steps}))
        written_sha = file_sha(out / "model.safetensors")
        store.upload_dir(out, store.artifact(spec))
        shutil.rmtree(out, ignore_errors=True)
        return _rows(spec, exp, task, {"en": outcome.dev}, {}, outcome, written_sha, "dev")
    # proves which encoder this trial read; the control reads none
    read_sha = "random" if spec.intermediate == SCRATCH else file_sha(encoder / "model.safetensors")
    return _rows(spec, exp, task, outcome.test, outcome.majority, outcome, read_sha, "test")


def _has_encoder(spec: TrialSpec) -> bool:
    from sweep.plan import BASELINE

    return spec.intermediate not in (BASELINE, SCRATCH)


def _state_dir(spec: TrialSpec, store: ResultsStore) -> Path:
    """Where training state is saved every N steps: the shared scratch folder when the store is a
    local or shared filesystem; node-local otherwise (see docs/DESIGN.md, Faults)."""
    if store.is_local:
        path = Path(store.scratch(spec))
    else:
        path = Path(tempfile.gettempdir()) / "itx-scratch" / spec.key
    path.mkdir(parents=True, exist_ok=True)
    return path


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

    primary = primary_metric(task.format)
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
                    "n_examples": outcome.n_test.get(lang, exp.data.dev),
                    "primary": metric == primary,
                    "chance": task.chance if metric == "accuracy" else np.nan,
                    "majority": majority.get(lang, {}).get(metric, np.nan),
                    "train_size": exp.data.train,
                    "trial_key": spec.key,
                    "encoder_sha": sha,
                    "seconds": outcome.seconds,
                }
            )
    frame = pd.DataFrame.from_records(records)
    return frame.astype({"seed": "int64", "n_examples": "int64", "train_size": "int64"})

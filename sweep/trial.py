"""What one trial does, without Ray: idempotent, content-addressed, resumable.

`execute` is the whole trial; the Tune trainable (`sweep.trainable`) only wraps it. A trial whose
artifact has a DONE marker returns its stored rows and trains nothing. Training state lives under
<root>/scratch/<key>, keyed by content, so a retry on any node resumes from the last save.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sweep.config import Experiment
from sweep.plan import SCRATCH, TrialSpec
from sweep.store import ResultsStore

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
    torch.set_num_threads(threads)  # one trial per core: more threads than cores is 20-40x slower
    if store.is_done(spec):
        info["reused"] = True
        store.publish(spec)
        return store.read_rows(spec) if spec.kind != "pretrain" else pd.DataFrame()
    if spec.kind == "pretrain":
        _pretrain(spec, exp, store, threads)
        return pd.DataFrame()
    rows = _fine_tune(spec, exp, store, info)
    store.write_rows(spec, rows)
    store.delete_dir(store.scratch(spec))  # resume state is only needed until DONE
    return rows


def _pretrain(spec: TrialSpec, exp: Experiment, store: ResultsStore, threads: int) -> None:
    from trainers.encoder import cached_pretrained

    local = cached_pretrained(exp.world, exp.model, exp.pretrain, threads=threads)
    store.upload_dir(local, store.artifact(spec))
    store.mark_done(spec)


def _fine_tune(
    spec: TrialSpec, exp: Experiment, store: ResultsStore, info: dict[str, Any]
) -> pd.DataFrame:
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
    data = task_data(
        world, task, SplitSizes(exp.data.train, exp.data.dev, exp.data.test), languages
    )
    with TrainingState(spec, store) as state:
        info["resumed_from_step"] = state.resumed_from
        if state.resumed_from:
            log.info("trial %s resumes from step %d", spec.key, state.resumed_from)
        outcome = train_and_evaluate(
            task,
            data,
            encoder,
            exp.train,
            seed=spec.seed,
            max_length=exp.model.max_length,
            state_dir=state.path,
            random_init=spec.intermediate == SCRATCH,
            cpu=exp.resources.gpu == 0,
            progress_bar=False,  # inside Tune, its status table is the progress view
            max_malformed=exp.data.max_malformed,
        )
    if outcome.data_issues:  # counted, never silently dropped: the report lists them
        store.write_json(
            f"data_issues/{spec.key}.json", {"trial": spec.label, "issues": outcome.data_issues}
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


class TrainingState:
    """The folder a trial's loop saves its state into, resumable from any node.

    Local or shared-filesystem roots: <root>/scratch/<key> itself. Object-store roots: a fresh
    node-local folder, filled from <root>/scratch/<key> on entry and mirrored back after every save
    by a background thread (the loop has no save hook; see `push_if_new` for why a copy taken
    between its writes is never uploaded).
    """

    def __init__(self, spec: TrialSpec, store: ResultsStore, interval: float = 0.5) -> None:
        self.spec, self.store, self.interval = spec, store, interval
        self.remote = not store.is_local
        self.path = (
            Path(tempfile.mkdtemp(prefix=f"itx-state-{spec.key}-"))
            if self.remote
            else Path(store.scratch(spec))
        )
        self.resumed_from = 0
        self.pushed: bytes | None = None  # progress.json of the last upload
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TrainingState:
        if self.remote:
            self.resumed_from = self.store.pull_state(self.spec, self.path)
            progress = self.path / "progress.json"
            self.pushed = progress.read_bytes() if progress.exists() else None
            self._thread = threading.Thread(target=self._mirror, daemon=True, name="itx-state")
            self._thread.start()
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self.resumed_from = _saved_step(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            shutil.rmtree(self.path, ignore_errors=True)  # node-local copy; the store has it

    def _mirror(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.push_if_new()
            except OSError as err:  # a failed upload only costs progress; the next save retries
                log.warning("trial %s: state upload failed: %s", self.spec.key, err)

    def push_if_new(self) -> bool:
        """Upload the local state if it is newer than the last upload and consistent.

        The loop writes state/ first, progress.json last (each by rename), and best weights just
        before a save. A copy is kept only if progress.json and the state folder did not change
        while copying and no copied file is newer than progress.json: a copy taken between the
        loop's writes would pair new weights with an old step and break bit-identical resume.
        """
        progress, state = self.path / "progress.json", self.path / "state"
        snapshot = Path(tempfile.mkdtemp(prefix="itx-snap-"))
        try:
            before = (progress.stat().st_mtime_ns, progress.read_bytes(), state.stat().st_ino)
            if before[1] == self.pushed:
                return False
            shutil.copytree(state, snapshot / "state")
            best = self.path / "best.safetensors"
            if best.exists():
                shutil.copy2(best, snapshot / "best.safetensors")
            after = (progress.stat().st_mtime_ns, progress.read_bytes(), state.stat().st_ino)
            newest = max(f.stat().st_mtime_ns for f in snapshot.rglob("*") if f.is_file())
            if before != after or newest > before[0]:
                return False  # caught between two writes of one save; the next tick retries
            (snapshot / "progress.json").write_bytes(before[1])
            self.store.push_state(self.spec, snapshot, json.loads(before[1])["step"])
            self.pushed = before[1]
            return True
        except FileNotFoundError:
            return False  # nothing saved yet, or a save replaced a folder while we copied
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)


def _saved_step(state_dir: Path) -> int:
    progress = state_dir / "progress.json"
    return int(json.loads(progress.read_text())["step"]) if progress.exists() else 0


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
                    "n_examples": outcome.n_dev if split == "dev" else outcome.n_test[lang],
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

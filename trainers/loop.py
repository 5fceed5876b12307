"""The one Accelerate training loop, shared by every task and both trial kinds.

Model selection is on English dev only (zero-shot). Training state is saved with Accelerate
every `checkpoint_every` steps into `state_dir`; a rerun with the same `state_dir` resumes from it
and ends with the same weights as an uninterrupted run (data order is a function of seed and epoch,
and the RNG states are part of the saved state).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainers import heads, metrics, preempt, quality
from trainers.settings import TrainConfig
from trainers.tasks import Example, Task, TaskData

LOSS_START_STEPS = 10  # steps averaged into the loss at the start (one batch is too noisy)


@dataclass
class Outcome:
    """What one fine-tuning run produced; `model` has the selected (best English dev) weights."""

    dev: dict[str, float]
    best_epoch: int
    steps: int
    seconds: float
    test: dict[str, dict[str, float]] = field(default_factory=dict)  # lang -> metric -> value
    majority: dict[str, dict[str, float]] = field(default_factory=dict)  # same, most-frequent label
    n_test: dict[str, int] = field(default_factory=dict)
    n_dev: int = 0  # English dev examples after malformed ones were dropped
    n_train: int = 0  # English training examples after malformed ones were dropped
    data_issues: dict[str, dict[str, int]] = field(default_factory=dict)  # "split/lang" -> counts
    model: Any = None
    dev_set: Any = None  # the encoded English dev set (V-information scores it again)
    dev_curve: list[float] = field(default_factory=list)  # English dev primary score, per epoch
    dev_majority: dict[str, float] = field(default_factory=dict)  # majority label on English dev
    loss_start: float = math.nan  # mean training loss of the first LOSS_START_STEPS steps
    loss_end: float = math.nan  # mean training loss of the last epoch


@dataclass(frozen=True)
class EpochEnd:
    """What `on_epoch` hears after each epoch's English dev evaluation."""

    task: str
    epoch: int  # 0-based
    epochs: int
    step: int
    loss: float  # mean training loss over the epoch's batches
    dev: dict[str, float]  # English dev scores, metric -> value
    metric: str  # the primary metric's name in `dev`
    seconds: float  # since this fine-tuning started
    null_model: bool  # trained on blank inputs (V-information)


# The default `on_epoch` of `train_and_evaluate`: set around a whole trial by its runner (the Tune
# trainable reports each epoch), so the call chain between the two needs no extra parameter.
EPOCH_LISTENER: ContextVar[Callable[[EpochEnd], None] | None] = ContextVar(
    "epoch_listener", default=None
)


class LengthGroupedBatches(torch.utils.data.Sampler):
    """Length-grouped batches whose order depends only on (seed, epoch): resumable mid-epoch.

    Examples are shuffled, cut into mega-batches of 50 batches, and sorted by length inside each
    (transformers' `get_length_grouped_indices`), so dynamic padding wastes little. With
    `accumulation` > 1 the groups are effective batches (`batch_size` x `accumulation`), each
    yielded as its micro-batches of `batch_size`: the same examples meet in one optimizer step
    as in one batch of the effective size.
    """

    def __init__(
        self, lengths: list[int], batch_size: int, seed: int, accumulation: int = 1
    ) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0
        self.accumulation = accumulation

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Any:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed * 1009 + self.epoch)
        group = self.batch_size * self.accumulation
        order = get_length_grouped_indices(self.lengths, group, generator=generator)
        for start in range(0, len(order), group):
            effective = order[start : start + group]
            yield from (
                effective[i : i + self.batch_size]
                for i in range(0, len(effective), self.batch_size)
            )

    def __len__(self) -> int:
        group = self.batch_size * self.accumulation
        full, rest = divmod(len(self.lengths), group)
        return full * self.accumulation + math.ceil(rest / self.batch_size)


def train_and_evaluate(
    task: Task,
    data: TaskData,
    encoder_dir: Path,
    config: TrainConfig,
    *,
    seed: int,
    max_length: int,
    state_dir: Path | None = None,
    random_init: bool = False,
    cpu: bool = True,
    progress_bar: bool = True,
    max_malformed: float = 0.01,
    init_model: Any = None,
    blank_inputs: bool = False,
    train: bool = True,
    on_epoch: Callable[[EpochEnd], None] | None = None,
    on_save: Callable[[Path, bool], None] | None = None,
) -> Outcome:
    """Fine-tune on English train, select on English dev, evaluate every test language zero-shot.

    `init_model` continues from an earlier stage's model (XCOPA: SIQA, then COPA): all of it when
    it is of this format's head class, its encoder only otherwise. `blank_inputs` trains on
    inputs emptied by the format (the null model of V-information). Formats that do not train
    (Tatoeba) are scored straight from the encoder, and so is `init_model` with `train=False`
    (a target whose training is a stage shared with other targets: XQuAD and MLQA). `on_epoch`
    (default: `EPOCH_LISTENER`'s value) is called after each epoch's dev evaluation.
    `on_save(state_dir, urgent)` is called on the main process after each save is whole (state,
    its progress.json, the top-level one, best weights); the folder's files are never written
    again, only renamed or deleted (see
    `_Progress.save`). `urgent` is true for a save asked for by `trainers.preempt` (a spot notice).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup
    from transformers.utils import logging as hf_logging

    from trainers.encoder import load_tokenizer

    hf_logging.set_verbosity_error()  # the expected "newly initialized head" load report
    hf_logging.disable_progress_bar()  # "Loading weights" bars, one per model load
    started = time.perf_counter()
    fmt = heads.get_format(task.format)
    data, data_issues = quality.clean(task, data, max_malformed)  # before any model is built
    if blank_inputs:
        data = dataclasses.replace(data, train=_blank(fmt, data.train), dev=_blank(fmt, data.dev))
    set_seed(seed)
    if config.deterministic:  # read at cuBLAS's first call: before any GPU work of the process
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # set either way: a Ray worker process runs many trials, this setting is process-wide
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    accumulation = config.gradient_accumulation_steps  # micro-batches per optimizer step
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=accumulation,
    )
    tokenizer = load_tokenizer(encoder_dir)
    model = _initial_model(fmt, task, encoder_dir, random_init, init_model, config.pooling)
    pools = data.pools
    if not fmt.trainable or not train:
        model = accelerator.prepare(model)
        outcome = Outcome(dev={}, best_epoch=-1, steps=0, seconds=0.0, data_issues=data_issues)
        _evaluate_test(task, fmt, data, tokenizer, model, config, max_length, accelerator, outcome)
        outcome.model = accelerator.unwrap_model(model)
        outcome.seconds = time.perf_counter() - started
        return outcome
    collate = fmt.collator(task, tokenizer)
    train = fmt.train_features(task, tokenizer, data.train["en"], max_length)
    sampler = LengthGroupedBatches(
        [fmt.length(r) for r in train],
        config.batch_size,
        seed,
        accumulation * accelerator.num_processes,  # one group: one effective batch
    )
    # its own generator: creating an iterator would otherwise draw from the global RNG, which a
    # resumed run restores to after that draw, shifting every dropout mask that follows
    loader = torch.utils.data.DataLoader(
        train,
        batch_sampler=sampler,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.AdamW(  # fused: one kernel for all parameters on a GPU
        model.parameters(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        fused=accelerator.device.type == "cuda",
    )
    updates_per_epoch = math.ceil(len(loader) / accumulation)  # optimizer steps
    total = updates_per_epoch * config.epochs
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    model, optimizer, loader, schedule = accelerator.prepare(model, optimizer, loader, schedule)
    if config.compile:  # worth it on a GPU for long trials; compile time is minutes on a CPU
        model = torch.compile(model, dynamic=True)  # dynamic: padded lengths vary by batch

    try:  # Accelerate loads tensors with torch.load(weights_only=True): no pickle code runs
        progress = _Progress.load(state_dir)
        if progress.step:
            accelerator.load_state(str(state_dir / "state"))
        best = (
            _load_best(state_dir, accelerator.unwrap_model(model))
            if progress.best_epoch >= 0
            else None
        )
    except Exception as err:  # truncated, foreign or malicious files: the caller discards them
        raise CorruptState(
            f"training state in {state_dir} is unusable: {type(err).__name__}"
        ) from err
    dev_sets = {"en": fmt.eval_set(task, tokenizer, data.dev["en"], max_length, pools.get("dev"))}

    bar = tqdm(
        total=len(loader) * config.epochs,  # micro-batches
        initial=progress.step,
        desc=task.name,
        disable=not (progress_bar and accelerator.is_main_process),
    )
    for epoch in range(progress.step // len(loader), config.epochs):
        model.train()
        # the prepared loader would otherwise reset the sampler to its own iteration counter,
        # which a resumed process starts at 0; the sampler itself for the skipping loader below
        loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        done_in_epoch = progress.step - epoch * len(loader)
        epoch_loader = (
            accelerator.skip_first_batches(loader, done_in_epoch) if done_in_epoch else loader
        )
        for batch in epoch_loader:
            # accumulate(): the loss is divided by the accumulation, and the prepared optimizer
            # and schedule step only on the micro-batch that completes an effective batch
            with accelerator.accumulate(model):
                loss = fmt.loss(model, batch)
                progress.add_loss(loss.item())  # per micro-batch, undivided
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
            progress.step += 1  # micro-batches: what a resume skips
            bar.update(1)
            epoch_end = progress.step % len(loader) == 0  # saved below, after dev evaluation
            in_epoch = progress.step - epoch * len(loader)
            updates = epoch * math.ceil(len(loader) / accumulation) + in_epoch // accumulation
            if (
                state_dir is not None
                and accelerator.sync_gradients  # never mid-accumulation: gradients are not saved
                and not epoch_end
            ):
                # or now: a spot interruption notice (sweep/spot.py) gives two minutes
                urgent = preempt.take_save_request()
                if urgent or updates % config.checkpoint_every == 0:
                    progress.save(accelerator, state_dir)
                    _saved(accelerator, state_dir, on_save, urgent)
        dev = evaluate_languages(task, model, dev_sets, config.eval_batch_size, accelerator)["en"]
        key = metrics.primary_metric(task.metric_family)
        progress.end_epoch(dev[key])
        if progress.best_epoch < 0 or dev[key] > progress.best_dev[key]:
            progress.best_epoch, progress.best_dev = epoch, dev
            best = {  # on the CPU: a device copy would cost 4 bytes per parameter of memory
                k: v.detach().to("cpu", copy=True)
                for k, v in accelerator.unwrap_model(model).state_dict().items()
            }
            _save_best(state_dir, best)
        if state_dir is not None:
            progress.save(accelerator, state_dir)
            _saved(accelerator, state_dir, on_save, preempt.take_save_request())
        listener = on_epoch or EPOCH_LISTENER.get()
        if listener is not None:
            listener(
                EpochEnd(
                    task=task.name,
                    epoch=epoch,
                    epochs=config.epochs,
                    step=progress.step,
                    loss=progress.epoch_losses[-1],
                    dev=dev,
                    metric=key,
                    seconds=time.perf_counter() - started,
                    null_model=blank_inputs,
                )
            )
    bar.close()

    final = accelerator.unwrap_model(model)
    final.load_state_dict(best)
    outcome = Outcome(
        dev=progress.best_dev,
        best_epoch=progress.best_epoch,
        steps=progress.step,
        seconds=0.0,
        data_issues=data_issues,
        n_dev=len(dev_sets["en"]),
        n_train=len(data.train["en"]),
        dev_set=dev_sets["en"],
        dev_curve=list(progress.dev_curve),
        loss_start=progress.loss_start,
        loss_end=progress.epoch_losses[-1] if progress.epoch_losses else math.nan,
    )
    pairs = fmt.majority(task, data.train["en"], dev_sets["en"])
    if pairs is not None:
        outcome.dev_majority = metrics.score(task.metric_family, *pairs, language="en")
    _evaluate_test(task, fmt, data, tokenizer, model, config, max_length, accelerator, outcome)
    outcome.model = final
    outcome.seconds = time.perf_counter() - started
    return outcome


def _initial_model(
    fmt: heads.Format,
    task: Task,
    encoder_dir: Path,
    random_init: bool,
    init_model: Any,
    pooling: str = "cls",
) -> Any:
    if init_model is None:
        return fmt.build_model(task, encoder_dir, random_init=random_init, pooling=pooling)
    if type(init_model) is fmt.model_class(pooling):
        return init_model  # same head: the earlier stage's head is trained further
    model = fmt.build_model(task, encoder_dir, random_init=True, pooling=pooling)
    missing, unexpected = heads.encoder_of(model).load_state_dict(
        heads.encoder_of(init_model).state_dict(), strict=False
    )
    # some heads carry XLM-R's pooler layer and some do not; every other weight must carry over
    stray = [k for k in (*missing, *unexpected) if not k.startswith("pooler.")]
    if stray:
        raise ValueError(f"{task.name}: earlier stage's encoder does not fit: {stray[:3]}")
    return model


def _blank(fmt: heads.Format, split: dict[str, list[Example]]) -> dict[str, list[Example]]:
    return {lang: [fmt.blank(e) for e in examples] for lang, examples in split.items()}


def _evaluate_test(
    task: Task,
    fmt: heads.Format,
    data: TaskData,
    tokenizer: Any,
    model: Any,
    config: TrainConfig,
    max_length: int,
    accelerator: Any,
    outcome: Outcome,
) -> None:
    """Zero-shot scores of every test language, and the majority baseline where one exists."""
    if not data.test:
        return
    pool = data.pools.get("test")
    test_sets = {
        lang: fmt.eval_set(task, tokenizer, examples, max_length, pool)
        for lang, examples in data.test.items()
    }
    outcome.test = evaluate_languages(task, model, test_sets, config.eval_batch_size, accelerator)
    outcome.n_test = {lang: len(rows) for lang, rows in test_sets.items()}
    train = data.train.get("en")
    for lang, eval_set in test_sets.items():
        pairs = fmt.majority(task, train, eval_set) if train else None
        if pairs is not None:
            outcome.majority[lang] = metrics.score(task.metric_family, *pairs, language=lang)


@torch.no_grad()
def evaluate_languages(
    task: Task,
    model: Any,
    sets: dict[str, heads.EvalSet],
    batch_size: int,
    accelerator: Any,
) -> dict[str, dict[str, float]]:
    """Scores per language in the task's metric family (official metrics)."""
    fmt = heads.get_format(task.format)
    model.eval()
    scores = {}
    for lang, eval_set in sets.items():
        gold, pred = fmt.predict(task, model, eval_set, batch_size, accelerator.device)
        scores[lang] = metrics.score(task.metric_family, gold, pred, language=lang)
    model.train()
    return scores


class CorruptState(RuntimeError):
    """A saved training state cannot be loaded; retrying would fail the same way every time."""


@dataclass
class _Progress:
    step: int = 0
    best_epoch: int = -1
    best_dev: dict[str, float] = field(default_factory=dict)
    # the training record, saved with the state so a resumed run reports the whole run
    dev_curve: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    start_losses: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=lambda: [0.0, 0])  # running sum, count

    def add_loss(self, loss: float) -> None:
        if len(self.start_losses) < LOSS_START_STEPS:
            self.start_losses.append(loss)
        self.epoch_loss = [self.epoch_loss[0] + loss, self.epoch_loss[1] + 1]

    def end_epoch(self, dev_score: float) -> None:
        self.dev_curve.append(dev_score)
        total, n = self.epoch_loss
        self.epoch_losses.append(total / n if n else math.nan)
        self.epoch_loss = [0.0, 0]

    @property
    def loss_start(self) -> float:
        return sum(self.start_losses) / len(self.start_losses) if self.start_losses else math.nan

    @classmethod
    def load(cls, state_dir: Path | None) -> _Progress:
        """The progress of the saved state: its own copy inside `state/` (the top-level
        progress.json is written last and may lag by one save)."""
        if state_dir is None:
            return cls()
        state, old = state_dir / "state", state_dir / "state.old"
        if not state.exists() and old.exists():  # killed between the two renames of a save
            old.rename(state)
        for path in (state / "progress.json", state_dir / "progress.json"):
            if path.exists():
                return cls(**json.loads(path.read_text()))
        return cls()

    def save(self, accelerator: Any, state_dir: Path) -> None:
        """The state folder with its own progress.json, committed by renames; then the top-level
        progress.json. A kill at any point resumes from one whole save, the old or the new."""
        payload = json.dumps(asdict(self))
        tmp = state_dir / "state.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.save_state(str(tmp))
        (tmp / "progress.json").write_text(payload)
        # Two renames, never a delete in place: `state` is always a whole save or absent; and no
        # file is written twice, so the uploader's hard-link snapshots never change under it.
        old, current = state_dir / "state.old", state_dir / "state"
        shutil.rmtree(old, ignore_errors=True)
        if current.exists():
            current.rename(old)
        tmp.rename(current)
        shutil.rmtree(old, ignore_errors=True)
        (state_dir / "progress.tmp").write_text(payload)
        (state_dir / "progress.tmp").replace(state_dir / "progress.json")


def _saved(
    accelerator: Any,
    state_dir: Path,
    on_save: Callable[[Path, bool], None] | None,
    urgent: bool = False,
) -> None:
    """Hand a whole save to its uploader (sweep.uploader on object stores), main process only;
    `urgent`: the save was asked for from outside (trainers.preempt), upload it now."""
    if on_save is not None and accelerator.is_main_process:
        on_save(state_dir, urgent)


def saved_step(state_dir: Path) -> int:
    """The step a run with this `state_dir` resumes from (0: starts afresh)."""
    return _Progress.load(state_dir).step


def _save_best(state_dir: Path | None, weights: dict[str, torch.Tensor]) -> None:
    if state_dir is None:
        return
    from safetensors.torch import save_file

    state_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(state_dir / "best.tmp"))
    (state_dir / "best.tmp").replace(state_dir / "best.safetensors")


def _load_best(state_dir: Path | None, model: Any) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file

    path = state_dir / "best.safetensors" if state_dir else None
    if path is None or not path.exists():
        return None
    weights = load_file(str(path))
    return {k: weights[k] for k in model.state_dict()}

"""What a plan costs before it runs: optimizer steps, GPU-hours (or CPU seconds), wall time on N
workers, storage, data moved and money, per stage and in total; trials the store already holds
cost nothing.

Steps come from the real training-set sizes (trainers/train_sizes.yaml, with provenance) or the
size-matched `data.train`, and each task's epochs, batch, gradient accumulation and max length.
Device time comes from sweep/throughput.yaml (published GPU figures, labelled; the synthetic
benchmark's CPU figures from BENCHMARKS.md). Wall time is a discrete-event simulation of the
plan's DAG under the sweep's own searcher (`DagSearcher`, longest chain first).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweep.config import Experiment
from sweep.plan import TRAINED_FORMATS, TrialSpec
from trainers.mixing import members_of
from trainers.paths import cache_root
from trainers.settings import pretrain_key

THROUGHPUT_FILE = Path(__file__).with_name("throughput.yaml")
TRAIN_SIZES_FILE = Path(__file__).resolve().parent.parent / "trainers" / "train_sizes.yaml"
BLANK_LENGTH = 4  # tokens of a blank input (specials and a separator): the null model's length
ROW_BYTES = 160  # parquet bytes per result row, measured on the demo's rows (about 150-170)
# fused AdamW reads weight, gradient and two moments and writes three (28 bytes per fp32
# parameter); gradient-norm clipping reads and rescales the gradients (12 more)
OPTIMIZER_BYTES_PER_PARAMETER = 40
STAGES = ("pretrain", "intermediate", "null", "stage", "target")


@functools.cache
def throughput_table() -> dict[str, Any]:
    return yaml.safe_load(THROUGHPUT_FILE.read_text())


@functools.cache
def train_sizes() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(TRAIN_SIZES_FILE.read_text())


def gpu_types() -> list[str]:
    return sorted(throughput_table()["gpus"])


def train_examples(exp: Experiment, name: str) -> tuple[int, int]:
    """English (train, dev) examples one training of task `name` reads: as trainers.data loads
    them, each member of a mixture capped at data.train / data.dev, the mixture sampling
    data.train of their training sets and keeping every member's dev set."""
    train = dev = 0
    for member in members_of(name, exp.mixtures):
        if exp.data.source == "hub":
            entry = train_sizes().get(exp.task(member).source)
            if entry is None:
                raise KeyError(f"no training-set size of {member!r} in {TRAIN_SIZES_FILE.name}")
            size = (int(entry["train"]), int(entry["dev"]))
        else:
            size = (exp.data.train or 0, exp.data.dev or 0)
        train += min(size[0], exp.data.train) if exp.data.train else size[0]
        dev += min(size[1], exp.data.dev) if exp.data.dev else size[1]
    return (min(train, exp.data.train) if exp.data.train else train), dev


def optimizer_steps(exp: Experiment, name: str) -> int:
    """Optimizer steps of one training of `name`: ceil(examples / batch), grouped by the
    accumulation, times epochs (one device per trial)."""
    if exp.task(name).format not in TRAINED_FORMATS:
        return 0
    train = exp.train_for(name)
    batches = math.ceil(train_examples(exp, name)[0] / train.batch_size)
    return math.ceil(batches / train.gradient_accumulation_steps) * train.epochs


@dataclass(frozen=True)
class Training:
    """One fine-tuning inside a trial: task, sequences trained and evaluated, length, steps."""

    task: str
    steps: int
    train_sequences: int  # examples x epochs
    eval_sequences: int  # English dev after every epoch
    length: int  # tokens per sequence the cost assumes (padded to the task's max length)


def trainings_of(exp: Experiment, spec: TrialSpec) -> list[Training]:
    """The fine-tunings a trial runs (none for an evaluation-only target or the pretrain)."""
    if spec.kind == "pretrain" or (spec.kind == "target" and spec.evaluate_only):
        return []
    name = {"intermediate": spec.intermediate, "null": spec.intermediate, "stage": spec.task}
    task = name.get(spec.kind, spec.target_task) or ""
    if exp.task(task).format not in TRAINED_FORMATS:
        return []
    train, dev = train_examples(exp, task)
    epochs = exp.train_for(task).epochs
    length = BLANK_LENGTH if spec.kind == "null" else exp.max_length_for(task)
    return [Training(task, optimizer_steps(exp, task), train * epochs, dev * epochs, length)]


# ---- device time ---------------------------------------------------------------------------


def _shape(model: str) -> dict[str, int]:
    return throughput_table()["models"][model]


def parameters(model: str) -> tuple[int, int]:
    """(non-embedding, total) parameters of an XLM-R shape (encoder layers and embeddings)."""
    s = _shape(model)
    d, ff = s["hidden"], s["ffn"]
    layer = 4 * d * d + 4 * d + 2 * d * ff + d + ff + 4 * d
    embeddings = (s["vocab"] + s["positions"] + 1) * d + 2 * d
    pooler = d * d + d
    return s["layers"] * layer, s["layers"] * layer + embeddings + pooler


def flops_per_sequence(model: str, length: int) -> float:
    """Training FLOPs of one sequence: 6 x non-embedding parameters per token plus attention."""
    s = _shape(model)
    dense, _ = parameters(model)
    return length * (6 * dense + 12 * s["layers"] * s["hidden"] * length)


def sequences_per_second(gpu: str, model: str, length: int) -> float:
    """Training sequences/s on `gpu`: the published anchor, scaled by FLOPs per sequence."""
    anchor = throughput_table()["gpus"][gpu]["anchor"]
    anchor_flops = flops_per_sequence(anchor["model"], anchor["length"])
    return anchor["seq_per_s"] * anchor_flops / flops_per_sequence(model, length)


def model_size(exp: Experiment) -> str:
    """`large` for an XLM-R large encoder, else `base` (the cost table's two shapes)."""
    name = exp.encoder.name.lower() if exp.encoder else ""
    return "large" if "large" in name else "base"


def gpu_seconds(exp: Experiment, spec: TrialSpec, gpu: str) -> float:
    """Device seconds of one trial on one `gpu`: training and dev evaluation (a third of a
    training sequence's FLOPs each) at the scaled throughput, plus each optimizer step's
    memory traffic at the GPU's bandwidth; test evaluation and loading are not counted."""
    model = model_size(exp)
    bandwidth = throughput_table()["gpus"][gpu]["memory_gb_per_s"] * 1e9
    step = OPTIMIZER_BYTES_PER_PARAMETER * parameters(model)[1] / bandwidth
    total = 0.0
    for t in trainings_of(exp, spec):
        rate = sequences_per_second(gpu, model, t.length)
        total += (t.train_sequences + t.eval_sequences / 3) / rate + t.steps * step
    return total


def cpu_cost(exp: Experiment, task: str) -> float:
    """Cost of one training example of `task` relative to nli's, on the CPU: measured per
    synthetic generator (sweep/throughput.yaml `cpu.task_cost`), 1 where none was measured."""
    return float(throughput_table()["cpu"]["task_cost"].get(exp.task(task).synthetic, 1.0))


def cpu_work(exp: Experiment, spec: TrialSpec) -> dict[str, float]:
    """Work units of one trial per task it trains (evaluation-only: per target): training
    examples, plus its English dev evaluation after every epoch and the test evaluation at
    `eval_speedup`, scaled by length / max length (the null model's blank inputs are short)."""
    cpu = throughput_table()["cpu"]
    tests = 0
    if spec.kind == "target":
        tests = len(exp.languages_of(exp.task(spec.target_task or ""))) * (exp.data.test or 0)
    elif spec.kind == "intermediate":
        tests = exp.data.test or 0  # English test rows of the intermediate
    work: dict[str, float] = {}
    for t in trainings_of(exp, spec):
        units = t.train_sequences + (t.eval_sequences + tests) / cpu["eval_speedup"]
        work[t.task] = work.get(t.task, 0.0) + units * t.length / exp.model.max_length
        tests = 0
    if tests and spec.kind == "target":  # an evaluation-only target
        work[spec.target_task or ""] = tests / cpu["eval_speedup"]
    return work


def cpu_seconds(exp: Experiment, spec: TrialSpec) -> float:
    """Seconds of one trial of the synthetic benchmark on one core while every trial slot is
    busy (sweep/throughput.yaml's `cpu`, fitted by benchmarks/plan_vs_run.py on a demo run):
    the per-trial overhead plus its work units at each task's cost."""
    cpu = throughput_table()["cpu"]
    if spec.kind == "pretrain":
        return exp.pretrain.steps / cpu["pretrain_steps_per_s"]
    work = cpu_work(exp, spec)
    rate = cpu["train_examples_per_s"]
    return cpu["trial_overhead_s"] + sum(cpu_cost(exp, t) * u / rate for t, u in work.items())


def release_priority(exp: Experiment, trials: list[TrialSpec]) -> dict[str, float] | None:
    """Estimated device seconds per trial, for the searcher's longest-chain-first release (the
    a100 figures for real data: only their ratios matter); None (chains counted in trials)
    when a source has no recorded size."""
    try:
        if exp.data.source == "synthetic":
            return {t.key: cpu_seconds(exp, t) for t in trials}
        return {t.key: gpu_seconds(exp, t, "a100") for t in trials}
    except KeyError:
        return None


# ---- wall time: the sweep's own searcher on N workers ----------------------------------------


def simulate(
    trials: list[TrialSpec],
    seconds: dict[str, float],
    workers: int,
    done: Iterable[str] = (),
    priority: dict[str, float] | None = None,
    warmup: float = 0.0,
) -> float:
    """Makespan of the plan with `workers` trials at a time, released by `DagSearcher` as the
    sweep does (longest chain first, chains measured in `priority`, default `seconds`).
    `warmup` is added to the first trial each worker runs after the pretraining (a fresh
    worker process: imports, data and encoder loading); finished trials (`done`) take no time."""
    from ray.tune.search import Searcher

    from sweep.searcher import DagSearcher

    searcher = DagSearcher(trials, set(done), {}, cost=seconds if priority is None else priority)
    searcher.set_max_concurrency(workers)
    kinds = {t.key: t.kind for t in trials}
    clock, running, ids, warm = 0.0, [], itertools.count(), 0
    while True:
        while len(running) < workers:
            trial_id = f"t{next(ids)}"
            suggestion = searcher.suggest(trial_id)
            if suggestion is None or suggestion == Searcher.FINISHED:
                break
            key = suggestion["spec"]["key"]
            extra = 0.0
            if seconds[key] and kinds[key] != "pretrain" and warm < workers:
                extra, warm = warmup, warm + 1
            heapq.heappush(running, (clock + seconds[key] + extra, trial_id))
        if not running:
            return clock
        clock, trial_id = heapq.heappop(running)
        searcher.on_trial_complete(trial_id, {"done": 1})


def critical_path(trials: list[TrialSpec], seconds: dict[str, float]) -> float:
    finish: dict[str, float] = {}
    for t in trials:  # parents first
        finish[t.key] = seconds[t.key] + (finish[t.parent] if t.parent else 0.0)
    return max(finish.values(), default=0.0)


# ---- storage and data moved ----------------------------------------------------------------


def weight_bytes(exp: Experiment) -> int:
    """Bytes of one encoder in fp32 safetensors (the synthetic shape, or XLM-R base/large)."""
    if exp.encoder is not None:
        return 4 * parameters(model_size(exp))[1]
    m = exp.model
    d, ff, layers = m.hidden_size, m.intermediate_size, m.num_hidden_layers
    layer = 4 * d * d + 4 * d + 2 * d * ff + d + ff + 4 * d
    return 4 * (layers * layer + (m.vocab_size + m.max_length + 3) * d + d * d)


def storage_bytes(exp: Experiment, spec: TrialSpec) -> tuple[int, int]:
    """(artifact bytes kept, training-state bytes while running) of one trial: an encoder or a
    stage model in fp32 safetensors, rows for the others; state = weights, AdamW's two moments
    and the best weights (4 x fp32 weights)."""
    weights = weight_bytes(exp)
    rows = _rows_per_trial(exp, spec) * ROW_BYTES
    kept = weights if spec.kind in ("pretrain", "intermediate", "stage") else 0
    state = 4 * weights if trainings_of(exp, spec) else 0
    return kept + rows, state


def _rows_per_trial(exp: Experiment, spec: TrialSpec) -> int:
    if spec.kind == "target":
        return 3 * len(exp.languages_of(exp.task(spec.target_task or "")))
    return 3 if spec.kind in ("intermediate", "null", "stage") else 0


def moved_bytes(exp: Experiment, spec: TrialSpec) -> int:
    """Bytes a trial moves through the store: its parent's artifact in, its artifact out, and
    one training-state upload per save (every checkpoint_every steps and each epoch end)."""
    kept, state = storage_bytes(exp, spec)
    parent_in = 0 if spec.kind == "pretrain" else weight_bytes(exp)
    saves = 0
    for t in trainings_of(exp, spec):
        train = exp.train_for(t.task)
        saves += t.steps // train.checkpoint_every + train.epochs
    return parent_in + kept + saves * state


# ---- the estimate -----------------------------------------------------------------------------


@dataclass
class StageEstimate:
    trials: int = 0
    reused: int = 0
    trainings: int = 0
    steps: int = 0
    sequences: int = 0
    seconds: float = 0.0  # device seconds (GPU or one CPU core)
    stored: int = 0
    moved: int = 0


@dataclass
class PlanEstimate:
    device: str  # "cpu" or a key of throughput.yaml gpus
    device_name: str
    source: str
    stages: dict[str, StageEstimate]
    total: StageEstimate
    seconds: dict[str, float]  # per trial key, 0 for reused ones
    wall: dict[int, float]  # workers -> simulated makespan (seconds)
    bound: dict[int, float]  # workers -> max(critical path, work / workers)
    critical_path: float
    state_peak: int  # training-state bytes with the widest concurrency running
    price: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def cost(self) -> float | None:
        return None if self.price is None else self.total.seconds / 3600 * self.price


def estimate(
    exp: Experiment,
    trials: list[TrialSpec],
    gpu: str = "a100",
    workers: Iterable[int] = (16, 64),
    price: float | None = None,
    done: Iterable[str] = (),
    cached: bool | None = None,
) -> PlanEstimate:
    """Cost of `trials` on `gpu` (real data) or the CPU (synthetic data); `done` trials are
    held by the store already and cost nothing; `cached`: the synthetic encoder is in the
    machine cache (None: look there)."""
    done = set(done)
    synthetic = exp.data.source == "synthetic"
    table = throughput_table()
    if synthetic:
        device, name, source = "cpu", "one CPU core per trial", table["cpu"]["source"]
    else:
        if gpu not in table["gpus"]:
            raise KeyError(f"unknown GPU type {gpu!r}; known: {', '.join(gpu_types())}")
        device, name, source = gpu, table["gpus"][gpu]["name"], table["gpus"][gpu]["source"]
    stages = {kind: StageEstimate() for kind in STAGES}
    notes: list[str] = []
    seconds: dict[str, float] = {}
    states = []
    for spec in trials:
        row = stages[spec.kind]
        row.trials += 1
        kept, state = storage_bytes(exp, spec)
        row.stored += kept
        if spec.key in done:
            row.reused += 1
            seconds[spec.key] = 0.0
            continue
        runs = trainings_of(exp, spec)
        row.trainings += len(runs)
        row.steps += sum(t.steps for t in runs)
        row.sequences += sum(t.train_sequences for t in runs)
        if synthetic and spec.kind == "pretrain":  # MLM pretraining of the synthetic encoder
            row.steps += exp.pretrain.steps
            row.sequences += exp.pretrain.steps * exp.pretrain.batch_size
        own = cpu_seconds(exp, spec) if synthetic else gpu_seconds(exp, spec, gpu)
        if not synthetic and spec.kind == "pretrain":
            own = 0.0  # the hub encoder is downloaded, not trained
        elif spec.kind == "pretrain" and (encoder_cached(exp) if cached is None else cached):
            own = table["cpu"]["pretrain_cached_s"]  # copied from the machine cache
            notes.append(f"the pretrained encoder is in the machine cache ({cache_root()})")
        seconds[spec.key] = own
        row.seconds += own
        row.moved += moved_bytes(exp, spec)
        states.append(state)
    total = StageEstimate()
    for row in stages.values():
        for attr in vars(total):
            setattr(total, attr, getattr(total, attr) + getattr(row, attr))
    # the sweep's start-up (Ray, the manifest) and each worker's first trial, measured on the
    # CPU; not modelled on GPUs (minutes of a multi-hour plan)
    cpu = table["cpu"]
    startup, warmup = (cpu["startup_s"], cpu["slot_warmup_s"]) if synthetic else (0.0, 0.0)
    # the config's own concurrency (the cluster it was written for) and the asked GPU counts
    sizes = sorted({exp.resources.max_concurrent_trials} | (set() if synthetic else set(workers)))
    path = critical_path(trials, seconds)
    wall = {n: startup + simulate(trials, seconds, n, done, warmup=warmup) for n in sizes}
    bound = {n: max(path, total.seconds / n) for n in sizes}
    widest = max(sizes)
    if exp.health.policy == "restart" and exp.health.restarts:
        notes.append(
            f"health restarts not counted: a fine-tune that does not learn is trained again, up "
            f"to {exp.health.restarts} more times, each at its trial's cost"
        )
    if synthetic:
        cpu_costs = table["cpu"]["task_cost"]
        unmeasured = sorted(
            {
                t.task
                for spec in trials
                for t in trainings_of(exp, spec)
                if exp.task(t.task).synthetic not in {*cpu_costs, "nli"}
            }
        )
        if unmeasured:
            notes.append(
                f"CPU cost per example not measured for {', '.join(unmeasured)}: estimated at "
                "nli's; measure it with benchmarks/plan_vs_run.py RUN --costs on a run of them"
            )
    else:
        notes.append(
            f"GPU figures are published ({source.split(',')[0]}), not measured by this tool; "
            "other lengths and XLM-R base scaled by training FLOPs per sequence; sequences "
            "padded to each task's max length (an upper bound: itx pads to the batch's "
            "longest); test evaluation, loading and saving not counted"
        )
    return PlanEstimate(
        device=device,
        device_name=name,
        source=source,
        stages={k: v for k, v in stages.items() if v.trials},
        total=total,
        seconds=seconds,
        wall=wall,
        bound=bound,
        critical_path=path,
        state_peak=sum(sorted(states, reverse=True)[:widest]),
        price=price,
        notes=notes,
    )


def encoder_cached(exp: Experiment) -> bool:
    """The synthetic encoder of `exp` is already pretrained in this machine's cache."""
    key = pretrain_key(exp.world, exp.model, exp.pretrain)
    return (cache_root() / "pretrained" / key / "DONE").exists()


def held_by_store(exp: Experiment, trials: list[TrialSpec]) -> set[str]:
    """Keys of the trials whose artifact is DONE under the config's storage root."""
    from sweep.store import ResultsStore

    store = ResultsStore(exp.storage, exp.name)
    return {t.key for t in trials if store.is_done(t)}

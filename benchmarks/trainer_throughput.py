"""Trainer throughput: the itx Accelerate loop, transformers.Trainer and a plain PyTorch loop.

    .venv/bin/python benchmarks/trainer_throughput.py [--steps-epochs 2] [--repeats 3]

Same model (the demo's tiny XLM-R shape), same tokenized data, same length-grouped batches, batch
size, number of optimizer steps, AdamW + linear schedule, fp32, one thread. Each is timed from model
load to the last optimizer step (evaluation kept to a 16-example dev set for all three); the median
of the repeats, run in turn so machine load hits all three alike, gives examples/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sweep.config import load_config
from trainers.encoder import load_tokenizer, pretrain
from trainers.heads import get_format
from trainers.loop import LengthGroupedBatches, train_and_evaluate
from trainers.settings import PretrainConfig, TrainConfig
from trainers.synthetic import task_data
from trainers.tasks import SplitSizes, Task, TaskData, get_task
from trainers.world import World


def plain_loop(task: Task, data: TaskData, encoder: Path, config: TrainConfig, seed: int) -> None:
    torch.manual_seed(seed)
    fmt = get_format(task.format)
    model = fmt.build_model(task, encoder)
    tok = load_tokenizer(encoder)
    rows = fmt.train_features(task, tok, data.train["en"], MAX_LENGTH)  # tokenizes, like itx
    sampler = LengthGroupedBatches([fmt.length(r) for r in rows], config.batch_size, seed)
    loader = torch.utils.data.DataLoader(
        rows, batch_sampler=sampler, collate_fn=fmt.collator(task, tok)
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    total = len(loader) * config.epochs
    from transformers import get_linear_schedule_with_warmup

    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    model.train()
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        for batch in loader:
            model(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)


def hf_trainer(
    task: Task, data: TaskData, encoder: Path, config: TrainConfig, seed: int, out: Path
) -> None:
    from transformers import Trainer, TrainingArguments

    fmt = get_format(task.format)
    tok = load_tokenizer(encoder)
    rows = fmt.train_features(task, tok, data.train["en"], MAX_LENGTH)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=config.batch_size,
        num_train_epochs=config.epochs,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=int(config.warmup_ratio * len(rows) / config.batch_size * config.epochs),
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        train_sampling_strategy="group_by_length",
        seed=seed,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    model = fmt.build_model(task, encoder)
    collate = fmt.collator(task, tok)
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate).train()


MAX_LENGTH = 64  # the demo's model.max_length


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    exp = load_config("configs/demo.yaml")
    config = exp.train.model_copy(update={"epochs": args.epochs})
    work = Path(tempfile.mkdtemp(prefix="itx-bench-"))
    encoder = work / "encoder"  # random weights of the demo's shape: speed, not accuracy
    pretrain(exp.world, exp.model, PretrainConfig(steps=0), encoder)
    task = get_task("nli")
    data = task_data(World(exp.world), task, SplitSizes(exp.data.train, 16, 16), ())
    examples = len(data.train["en"]) * config.epochs

    runners = {
        "itx loop": lambda: train_and_evaluate(
            task,
            data,
            encoder,
            config,
            seed=0,
            max_length=exp.model.max_length,
            progress_bar=False,
        ),
        "transformers.Trainer": lambda: hf_trainer(task, data, encoder, config, 0, work / "hf"),
        "plain PyTorch loop": lambda: plain_loop(task, data, encoder, config, 0),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    rate = {name: examples / statistics.median(t) for name, t in times.items()}
    print(
        f"{examples} training examples ({config.epochs} epochs, batch {config.batch_size}), "
        f"1 thread, median of {args.repeats}"
    )
    for name, r in rate.items():
        print(f"  {name:<22}{r:8.1f} examples/s")
    itx = rate["itx loop"]
    print(f"itx / transformers.Trainer: {itx / rate['transformers.Trainer']:.3f} (target >= 1.0)")
    print(f"itx / plain loop:           {itx / rate['plain PyTorch loop']:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()

"""Padding efficiency: real tokens / padded tokens in training and evaluation batches.

    .venv/bin/python benchmarks/padding.py

Training batches come from the loop's length-grouped sampler, compared with plain shuffled
batches (the peer: a DataLoader with shuffle=True); evaluation batches are length-sorted. Measured
on the demo's synthetic tasks (real tokenizer) and on an XNLI-like length distribution.
"""

from __future__ import annotations

import numpy as np
import torch

from sweep.config import load_config
from trainers.encoder import cached_pretrained, load_tokenizer
from trainers.heads import get_format
from trainers.loop import LengthGroupedBatches
from trainers.synthetic import task_data
from trainers.tasks import SplitSizes, get_task
from trainers.world import World


def efficiency(lengths: list[int], batches: list[list[int]]) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return real / padded


def shuffled(n: int, batch_size: int, seed: int) -> list[list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def sorted_eval(lengths: list[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def xnli_like(n: int, seed: int = 0) -> list[int]:
    """Premise + hypothesis lengths in XLM-R tokens: log-normal around 45, capped at 128."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(45), 0.45, n), 12, 128).astype(int).tolist()


def main() -> None:
    exp = load_config("configs/demo.yaml")
    tok = load_tokenizer(cached_pretrained(exp.world, exp.model, exp.pretrain, threads=2))
    world = World(exp.world)
    cases = {}
    for name in ("nli", "pos"):
        task = get_task(name)
        data = task_data(world, task, SplitSizes(exp.data.train, 10, exp.data.test), ("en", "fake"))
        fmt = get_format(task.format)
        train = [fmt.length(r) for r in fmt.train_features(task, tok, data.train["en"], 64)]
        test = {  # the loop evaluates these sets' features, batched by input_ids length
            lang: [len(r["input_ids"]) for r in fmt.eval_set(task, tok, examples, 64).features]
            for lang, examples in data.test.items()
        }
        cases[f"demo {name}"] = (train, test, exp.train.batch_size, exp.train.eval_batch_size)
    lengths = xnli_like(20_000)
    cases["XNLI-like"] = (lengths, {"xx": xnli_like(5_010, seed=1)}, 32, exp.train.eval_batch_size)

    print(f"train batch {exp.train.batch_size}, eval batch {exp.train.eval_batch_size}")
    print(f"{'data':<12}{'train grouped':>15}{'train shuffled':>16}{'ratio':>8}{'eval sorted':>13}")
    for label, (train, test, bs, ebs) in cases.items():
        sampler = LengthGroupedBatches(train, bs, seed=0)
        grouped = []
        for epoch in range(3):
            sampler.set_epoch(epoch)
            grouped.append(efficiency(train, list(sampler)))
        plain = [efficiency(train, shuffled(len(train), bs, s)) for s in range(3)]
        # the loop evaluates each language on its own, length-sorted
        ev = np.mean([efficiency(ls, sorted_eval(ls, ebs)) for ls in test.values()])
        grouped, plain = np.mean(grouped), np.mean(plain)
        print(f"{label:<12}{grouped:>15.3f}{plain:>16.3f}{grouped / plain:>8.2f}{ev:>13.3f}")
    print("target: >= 0.90 for training and evaluation batches on both distributions")


if __name__ == "__main__":
    main()

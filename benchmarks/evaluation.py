"""Zero-shot evaluation speed: every language of a task in one pass, against the training step.

    .venv/bin/python benchmarks/evaluation.py

The loop's evaluator (no grad, length-sorted batches of `eval_batch_size`) over all five demo
languages, against training on the same examples (forward, backward, AdamW; length-grouped
batches of `batch_size`). Same model (demo shape), one thread, median of 3.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from sweep.config import load_config
from trainers.encoder import load_tokenizer, pretrain
from trainers.heads import get_format
from trainers.loop import LengthGroupedBatches, evaluate_languages
from trainers.settings import PretrainConfig
from trainers.synthetic import task_data
from trainers.tasks import SplitSizes, get_task
from trainers.world import World


def main() -> None:
    torch.set_num_threads(1)
    exp = load_config("configs/demo.yaml")
    encoder = Path(tempfile.mkdtemp(prefix="itx-bench-")) / "encoder"
    pretrain(exp.world, exp.model, PretrainConfig(steps=0), encoder)
    tok = load_tokenizer(encoder)
    for name in ("nli", "pos"):
        task = get_task(name)
        data = task_data(World(exp.world), task, SplitSizes(16, 16, exp.data.test), exp.languages)
        fmt = get_format(task.format)
        sets = {
            lang: fmt.eval_set(task, tok, ex, exp.model.max_length)
            for lang, ex in data.test.items()
        }
        rows = [r for s in sets.values() for r in s.features]
        model = fmt.build_model(task, encoder)
        collate = fmt.collator(task, tok)
        accelerator = Accelerator(cpu=True)
        evals, trains = [], []
        for _ in range(3):
            start = time.perf_counter()
            evaluate_languages(task, model, sets, exp.train.eval_batch_size, accelerator)
            evals.append(time.perf_counter() - start)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            sampler = LengthGroupedBatches([fmt.length(r) for r in rows], exp.train.batch_size, 0)
            model.train()
            start = time.perf_counter()
            for batch in torch.utils.data.DataLoader(
                rows, batch_sampler=sampler, collate_fn=collate
            ):
                model(**batch).loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            trains.append(time.perf_counter() - start)
        ev = len(rows) / statistics.median(evals)
        tr = len(rows) / statistics.median(trains)
        print(
            f"{name}: {len(rows)} examples in {len(sets)} languages; evaluation {ev:.0f} ex/s, "
            f"training step {tr:.0f} ex/s; evaluation / training = {ev / tr:.2f}"
        )
    print("expected: evaluation several times faster than training (no backward, no optimizer)")


if __name__ == "__main__":
    main()

"""GPU trainer benchmark: the itx loop on an XLM-R-base-shaped model; tokens/s and model FLOPs
utilization (MFU). One prepared command for a lent GPU machine, under 8 minutes:

    .venv/bin/python benchmarks/gpu_trainer.py            # CUDA machine: bf16, fused AdamW, SDPA
    .venv/bin/python benchmarks/gpu_trainer.py --compile  # the same with torch.compile
    .venv/bin/python benchmarks/gpu_trainer.py --smoke    # a tiny shape on the CPU: checks it runs

The model is randomly initialized (no hub here) at XLM-R base's shape: 768 hidden, 12 layers,
12 heads, 3072 feed-forward, 250,002-word vocabulary; sequence-pair classification on the synthetic
NLI data at max length 128. MFU = 6 x non-embedding parameters x tokens/s / the GPU's dense bf16
peak (pass --peak-tflops for GPUs not in the table).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from trainers.encoder import load_tokenizer, pretrain
from trainers.heads import get_format
from trainers.loop import train_and_evaluate
from trainers.settings import ModelConfig, PretrainConfig, TrainConfig
from trainers.synthetic import task_data
from trainers.tasks import SplitSizes, get_task
from trainers.world import World, WorldConfig

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny shape on the CPU")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()
    gpu = torch.cuda.is_available() and not args.smoke
    world = WorldConfig(sentences_per_language=2000)
    if args.smoke:
        shape = ModelConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_length=128,
            vocab_size=600,
        )
        examples = 256
    else:
        shape = ModelConfig(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_length=128,
            vocab_size=1500,
            dropout=0.1,
        )
        examples = args.examples
    work = Path(tempfile.mkdtemp(prefix="itx-gpu-bench-"))
    encoder = work / "encoder"
    pretrain(world, shape, PretrainConfig(steps=0), encoder)
    if (
        not args.smoke
    ):  # XLM-R's real vocabulary size: embedding and optimizer memory as in the study
        from transformers import XLMRobertaModel

        model = XLMRobertaModel.from_pretrained(encoder)
        model.resize_token_embeddings(250_002)
        model.save_pretrained(encoder)
    task = get_task("nli")
    data = task_data(World(world), task, SplitSizes(examples, 256, 16), ())
    config = TrainConfig(
        lr=3e-5,
        epochs=1,
        batch_size=args.batch_size,
        eval_batch_size=256,
        mixed_precision="bf16" if gpu else "no",
        compile=args.compile,
        checkpoint_every=10**9,
    )
    tok = load_tokenizer(encoder)
    fmt = get_format(task.format)
    train = fmt.train_features(task, tok, data.train["en"], shape.max_length)
    tokens = sum(fmt.length(f) for f in train)  # the real tokens the loop trains on
    if gpu:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = train_and_evaluate(
        task,
        data,
        encoder,
        config,
        seed=0,
        max_length=shape.max_length,
        cpu=not gpu,
        progress_bar=False,
    )
    if gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    params = sum(p.numel() for n, p in out.model.named_parameters() if "embeddings" not in n)
    rate = tokens / seconds
    device = torch.cuda.get_device_name() if gpu else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)
    print(
        f"device: {device}; {examples} examples, {tokens} real tokens, batch {args.batch_size}, "
        f"bf16={gpu}, compile={args.compile}"
    )
    print(f"time {seconds:.1f} s (model load, one epoch, English dev evaluation)")
    print(f"tokens/s: {rate:,.0f}; examples/s: {examples / seconds:,.1f}")
    if peak:
        mfu = 6 * params * rate / (peak * 1e12)
        print(f"MFU: {mfu:.3f} ({params / 1e6:.0f}M non-embedding parameters, peak {peak} TFLOP/s)")


if __name__ == "__main__":
    main()

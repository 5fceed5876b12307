"""Tokenizer and encoder: building, MLM pretraining, and the encoder-only hand-off.

An encoder folder holds `model.safetensors` + `config.json` of an `XLMRobertaModel` (no head, no
label maps) and `tokenizer/`. Every head class loads it intact; heads are always built with explicit
`num_labels`, because a saved config would otherwise carry the previous task's label count.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from trainers.paths import cache_root
from trainers.settings import ModelConfig, PretrainConfig, pretrain_key
from trainers.world import World, WorldConfig

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # XLM-R's ids 0..4


def train_tokenizer(world: World, model: ModelConfig, seed: int) -> Any:
    """A Unigram tokenizer (XLM-R's model family and special ids) trained on all languages."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=model.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        unk_token="<unk>",
        show_progress=False,  # its bars print as blank lines in a sweep's log
    )
    text = [s for lang in world.languages for s in world.corpus(lang, 3000, seed=seed + 1)]
    tok.train_from_iterator(text, trainer)
    vocab = [tuple(piece) for piece in json.loads(tok.to_str())["model"]["vocab"]]
    # the real XLM-R class (not a generic fast tokenizer), so hub and synthetic paths share code
    return XLMRobertaTokenizer(vocab=vocab, model_max_length=model.max_length)


def xlmr_config(model: ModelConfig, vocab_size: int) -> Any:
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=vocab_size,  # the trained vocab can be smaller than asked
        hidden_size=model.hidden_size,
        num_hidden_layers=model.num_hidden_layers,
        num_attention_heads=model.num_attention_heads,
        intermediate_size=model.intermediate_size,
        max_position_embeddings=model.max_length + 2,  # positions start after the pad id
        hidden_dropout_prob=model.dropout,
        attention_probs_dropout_prob=model.dropout,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )


def save_encoder(encoder: Any, tokenizer: Any, out: Path) -> None:
    """Write an encoder-only folder: safetensors weights, config without label maps, tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    config = encoder.config
    for attr in ("id2label", "label2id"):
        if hasattr(config, attr):
            setattr(config, attr, None)
    encoder.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out / "tokenizer")


def load_tokenizer(encoder_dir: Path) -> Any:
    from transformers import XLMRobertaTokenizer

    return XLMRobertaTokenizer.from_pretrained(encoder_dir / "tokenizer")


def pretrain(
    world_config: WorldConfig,
    model: ModelConfig,
    config: PretrainConfig,
    out: Path,
    threads: int = 1,
) -> dict[str, float]:
    """Build the tokenizer and MLM-pretrain a tiny XLM-R on monolingual text of every language.

    Writes the encoder folder to `out` (DONE last) and returns the loss curve summary. A budget of
    0 steps gives the randomly initialized encoder, for smoke tests.
    """
    from transformers import DataCollatorForLanguageModeling, XLMRobertaForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars, as in trainers.loop
    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    world = World(world_config)
    tokenizer = train_tokenizer(world, model, config.seed)
    text = [
        s
        for lang in world.languages
        for s in world.corpus(lang, world_config.sentences_per_language, seed=config.seed)
    ]
    ids = tokenizer(text, truncation=True, max_length=model.max_length)["input_ids"]
    chunks = _pack(ids, model.max_length)
    mlm = XLMRobertaForMaskedLM(xlmr_config(model, len(tokenizer)))
    collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mask_prob)
    optimizer = torch.optim.AdamW(mlm.parameters(), lr=config.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, config.warmup_steps))
    )
    generator = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    mlm.train()
    for step in range(config.steps):
        idx = torch.randint(len(chunks), (config.batch_size,), generator=generator)
        batch = collate([{"input_ids": chunks[i]} for i in idx.tolist()])
        labels = batch.pop("labels")
        hidden = mlm.roberta(**batch).last_hidden_state
        masked = labels != -100  # vocabulary logits only where a token is masked: 1.5x faster
        loss = torch.nn.functional.cross_entropy(mlm.lm_head(hidden[masked]), labels[masked])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mlm.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 500 == 0:
            log.info("pretrain step %d/%d loss %.3f", step, config.steps, loss.item())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_encoder(mlm.roberta, tokenizer, tmp)
    tail = losses[-100:] or [math.nan]
    summary = {
        "final_mlm_loss": sum(tail) / len(tail),
        "steps": config.steps,
        "seconds": time.perf_counter() - started,
        "vocab_size": len(tokenizer),
    }
    (tmp / "pretrain.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    (out / "DONE").write_text("ok\n")
    return summary


def _pack(ids: list[list[int]], length: int) -> list[list[int]]:
    """Concatenate sentences (each `<s> ... </s>`) into full-length chunks: no padding is wasted."""
    chunks, current = [], []
    for sentence in ids:
        if len(current) + len(sentence) > length:
            chunks.append(current)
            current = []
        current.extend(sentence)
    if current:
        chunks.append(current)
    return chunks


def cached_pretrained(
    world: WorldConfig, model: ModelConfig, config: PretrainConfig, threads: int = 1
) -> Path:
    """The pretrained encoder from the machine cache, built once per content hash."""
    out = cache_root() / "pretrained" / pretrain_key(world, model, config)
    if not (out / "DONE").exists():
        log.info("pretraining synthetic encoder into %s", out)
        pretrain(world, model, config, out, threads=threads)
    return out


def fetch_hub_encoder(name: str, revision: str | None, out: Path) -> Path:
    """A hub (or local) XLM-R checkpoint as an encoder folder: encoder weights and tokenizer.

    Fails with one line naming the model and how to provide it when the hub cannot be reached.
    """
    from transformers import AutoTokenizer, XLMRobertaModel

    try:
        encoder = XLMRobertaModel.from_pretrained(name, revision=revision, add_pooling_layer=False)
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    except OSError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OSError(
            f"encoder {name!r} (revision {revision or 'main'}) cannot be loaded: {reason}; "
            "download it where the hub is reachable (huggingface-cli download) and set "
            "encoder.name to that local folder"
        ) from None
    save_encoder(encoder, tokenizer, out)
    (out / "DONE").write_text(name)
    return out

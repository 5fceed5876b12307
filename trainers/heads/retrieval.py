"""Retrieval: a trained dual encoder (Mewsli-X, LAReQA) and training-free sentence retrieval
(Tatoeba). Both embed text by attention-masked mean pooling and rank by cosine similarity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from trainers.heads.base import EvalSet, Format, by_length, empty_text

# Softmax temperature of the in-batch loss: cosines lie in [-1, 1], so logits span +-20. 0.05 is
# the usual value for in-batch contrastive fine-tuning of mean-pooled encoders (SimCSE, E5); at 1
# the softmax over a batch of cosines is nearly flat and the gradient vanishes.
TEMPERATURE = 0.05
TOP_K = 20  # both retrieval metrics score the first 20 candidates (mAP@20, MRR@20)


def bare_encoder(encoder_dir: Path, random_init: bool) -> Any:
    """XLMRobertaModel without the pooler: nothing here reads the pooler, and a parameter that
    gets no gradient makes DistributedDataParallel fail unless told to search for unused ones."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    if random_init:  # the no-pretraining control
        return XLMRobertaModel(
            XLMRobertaConfig.from_pretrained(encoder_dir), add_pooling_layer=False
        )
    return XLMRobertaModel.from_pretrained(encoder_dir, add_pooling_layer=False)


def pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and their attention mask (from lengths: a pad id inside a text stays)."""
    ids = torch.full((len(sequences), max(map(len, sequences))), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the unpadded token vectors (specials included, as XTREME's default pooling)."""
    weights = mask.unsqueeze(-1).float()  # float32 sums: bf16 would round long sentences
    return (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1)


def in_batch_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    same_positive: torch.Tensor | None = None,
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """Cross entropy of each query against every positive of the batch, its own the target.

    Embeddings need not be normalized (done here). `same_positive[i, j]` marks positives with the
    same text: another query's copy of my positive is not a negative, so it leaves my softmax.
    """
    q, p = F.normalize(queries.float(), dim=-1), F.normalize(positives.float(), dim=-1)
    logits = q @ p.T / temperature
    if same_positive is not None:
        eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same_positive & ~eye, float("-inf"))
    targets = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, targets)


def embed(model: Any, ids: torch.Tensor, mask: torch.Tensor, layer: int | None = None) -> Any:
    """Mean-pooled embeddings of the last hidden state, or of `hidden_states[layer]` if given."""
    if layer is None:
        return mean_pool(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return mean_pool(out.hidden_states[layer], mask)


def pad_collator(pad_id: int) -> Any:
    """Batches {"input_ids"} features: one side of a retrieval pair, at evaluation."""

    def collate(features: list[dict]) -> dict[str, torch.Tensor]:
        ids, mask = pad([f["input_ids"] for f in features], pad_id)
        return {"input_ids": ids, "attention_mask": mask}

    return collate


@torch.no_grad()
def embed_all(
    model: Any,
    features: list[dict],
    collate: Any,
    batch_size: int,
    device: Any,
    layer: int | None = None,
) -> torch.Tensor:
    """L2-normalized float32 embeddings on the CPU, in the order of `features`."""
    out: torch.Tensor | None = None
    for idx in by_length(features, batch_size):
        batch = collate([features[i] for i in idx])
        vectors = embed(
            model, batch["input_ids"].to(device), batch["attention_mask"].to(device), layer
        )
        vectors = F.normalize(vectors.float(), dim=-1).cpu()
        if out is None:
            out = torch.empty(len(features), vectors.shape[-1])
        out[idx] = vectors
    if out is None:
        raise ValueError("nothing to embed")
    return out


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


class DualEncoder(Format):
    """One shared tower for queries and candidates, as the XTREME-R Mewsli-X and LAReQA baselines.

    Training examples: {"query", "positive"} (in-batch negatives). Dev/test examples: {"query",
    "gold": [candidate id, ...]} against the split's pool [{"id", "text"}]. Gold is each query's
    gold id list as given; predicted is the top-20 pool ids, best first.
    """

    name = "dual_encoder"
    head_class = None

    def build_model(
        self, task: Any, encoder_dir: Path, random_init: bool = False, pooling: str = "cls"
    ) -> Any:
        return bare_encoder(encoder_dir, random_init)  # pools by its own rule (mean, a layer)

    def check(self, task: Any, example: dict) -> str | None:
        if "query" not in example:
            return "empty query"
        problem = empty_text(example, ("query", "positive"))
        if problem or "positive" in example:  # a training example
            return problem
        gold = example.get("gold")
        return None if isinstance(gold, list | tuple) and gold else "no gold ids"

    def train_features(self, task: Any, tokenizer: Any, examples: list, max_length: int) -> list:
        queries = tokenize(tokenizer, [e["query"] for e in examples], max_length)
        positives = tokenize(tokenizer, [e["positive"] for e in examples], max_length)
        return [
            {"query_ids": q, "positive_ids": p} for q, p in zip(queries, positives, strict=True)
        ]

    def length(self, feature: dict) -> int:
        return max(len(feature["query_ids"]), len(feature["positive_ids"]))

    def collator(self, task: Any, tokenizer: Any) -> Any:
        pad_id = tokenizer.pad_token_id

        def collate(features: list[dict]) -> dict[str, torch.Tensor]:
            q_ids, q_mask = pad([f["query_ids"] for f in features], pad_id)
            p_ids, p_mask = pad([f["positive_ids"] for f in features], pad_id)
            return {
                "query_input_ids": q_ids,
                "query_attention_mask": q_mask,
                "positive_input_ids": p_ids,
                "positive_attention_mask": p_mask,
            }

        return collate

    def loss(self, model: Any, batch: dict) -> Any:
        q_ids, q_mask = batch["query_input_ids"], batch["query_attention_mask"]
        p_ids, p_mask = batch["positive_input_ids"], batch["positive_attention_mask"]
        # the same text gives the same ids and mask after padding: compare whole rows
        same = ((p_ids[:, None] == p_ids[None]) & (p_mask[:, None] == p_mask[None])).all(-1)
        return in_batch_loss(embed(model, q_ids, q_mask), embed(model, p_ids, p_mask), same)

    def eval_set(
        self,
        task: Any,
        tokenizer: Any,
        examples: list,
        max_length: int,
        pool: list[dict] | None = None,
    ) -> EvalSet:
        if not pool:
            raise ValueError(f"{task.name}: a dual-encoder evaluation needs its candidate pool")
        queries = tokenize(tokenizer, [e["query"] for e in examples], max_length)
        candidates = tokenize(tokenizer, [c["text"] for c in pool], max_length)
        return EvalSet(
            [{"input_ids": ids} for ids in queries],
            examples,
            pad_collator(tokenizer.pad_token_id),
            extra={
                "pool_ids": [c["id"] for c in pool],
                "pool_features": [{"input_ids": ids} for ids in candidates],
            },
        )

    @torch.no_grad()
    def predict(
        self, task: Any, model: Any, data: EvalSet, batch_size: int, device: Any
    ) -> tuple[list, list]:
        pool_ids = data.extra["pool_ids"]
        candidates = embed_all(model, data.extra["pool_features"], data.collate, batch_size, device)
        queries = embed_all(model, data.features, data.collate, batch_size, device)
        k = min(TOP_K, len(pool_ids))
        ranked = []
        for start in range(0, len(queries), batch_size):  # scores of a few queries at a time
            top = (queries[start : start + batch_size] @ candidates.T).topk(k, dim=-1).indices
            ranked += [[pool_ids[j] for j in row] for row in top.tolist()]
        gold = [list(e["gold"]) for e in data.examples]
        return gold, ranked


def pooled_layer(task: Any, config: Any) -> int:
    """The `hidden_states` index Tatoeba pools: the task's `layer`, else the middle of the stack.

    XTREME-R's baseline takes a middle layer of XLM-R large (its flag 13 of 24 counts after the
    embedding output), where cross-lingual alignment peaks; `num_hidden_layers // 2` (12 of 24, 6 of
    12) follows it without per-model constants. Never 0, the embedding output: for a one-layer
    encoder that would bypass the encoder and make the score blind to any training.
    """
    if task.layer is not None:
        return task.layer
    return max(1, config.num_hidden_layers // 2)


class SentenceRetrieval(Format):
    """Tatoeba: examples {"source": xx sentence, "target": its English translation}, parallel by
    position. As utils_retrieve.py, the xx sentences are indexed and the English ones query them:
    gold[i] = i, pred[i] = argmax_j cos(target_i, source_j)."""

    name = "sentence_retrieval"
    trainable = False

    def build_model(
        self, task: Any, encoder_dir: Path, random_init: bool = False, pooling: str = "cls"
    ) -> Any:
        return bare_encoder(encoder_dir, random_init)  # pools by its own rule (mean, a layer)

    def check(self, task: Any, example: dict) -> str | None:
        missing = next((side for side in ("source", "target") if side not in example), None)
        return f"empty {missing}" if missing else empty_text(example, ("source", "target"))

    def train_features(self, task: Any, tokenizer: Any, examples: list, max_length: int) -> list:
        raise NotImplementedError(
            f"{task.name}: sentence retrieval is scored straight from an encoder (trainable=False)"
        )

    def eval_set(
        self,
        task: Any,
        tokenizer: Any,
        examples: list,
        max_length: int,
        pool: list[dict] | None = None,
    ) -> EvalSet:
        sources = tokenize(tokenizer, [e["source"] for e in examples], max_length)
        targets = tokenize(tokenizer, [e["target"] for e in examples], max_length)
        return EvalSet(
            [{"input_ids": ids} for ids in targets],  # the English queries
            examples,
            pad_collator(tokenizer.pad_token_id),
            extra={"source_features": [{"input_ids": ids} for ids in sources]},
        )

    @torch.no_grad()
    def predict(
        self, task: Any, model: Any, data: EvalSet, batch_size: int, device: Any
    ) -> tuple[list, list]:
        layer = pooled_layer(task, getattr(model, "module", model).config)  # DDP-wrapped or not
        index = embed_all(
            model, data.extra["source_features"], data.collate, batch_size, device, layer
        )
        queries = embed_all(model, data.features, data.collate, batch_size, device, layer)
        pred = []
        for start in range(0, len(queries), batch_size):
            pred += (queries[start : start + batch_size] @ index.T).argmax(-1).tolist()
        return list(range(len(pred))), pred

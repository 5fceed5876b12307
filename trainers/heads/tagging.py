"""Token tagging with first-subword labels (UD-POS, WikiANN NER; CCG supertagging)."""

from __future__ import annotations

from typing import Any

import torch

from trainers.heads.base import EvalSet, Labelled, label_maps, label_problem, most_frequent


def word_lengths(tokenizer: Any, sentences: list[list[str]]) -> list[list[int]]:
    """Subwords per word of each sentence (at least 1: an empty word still takes a slot)."""
    enc = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
    out = []
    for i, words in enumerate(sentences):
        counts = [0] * len(words)
        for word in enc.word_ids(i):
            if word is not None:
                counts[word] += 1
        out.append([max(1, c) for c in counts])
    return out


def split_long_sentences(tokenizer: Any, examples: list, max_length: int) -> list:
    """Sentences cut, between words, into pieces of at most `max_length` tokens with the
    specials: the official preprocessing does the same before training and evaluation
    (google-research/xtreme utils_preprocess.py `udpos_tokenize_preprocess` and
    `panx_tokenize_preprocess`: a new sentence starts where the next word would pass
    max_len minus the special tokens), so no word goes unscored. A single word longer than
    the budget stays one piece and is truncated (the official script makes it <unk>)."""
    budget = max(1, max_length - tokenizer.num_special_tokens_to_add())
    lengths = word_lengths(tokenizer, [e["words"] for e in examples])
    out = []
    for example, counts in zip(examples, lengths, strict=True):
        if sum(counts) <= budget:
            out.append(example)
            continue
        start, used = 0, 0
        for k, n in enumerate(counts):
            if used + n > budget and k > start:
                out.append({**example, "words": example["words"][start:k],
                            "tags": example["tags"][start:k]})  # fmt: skip
                start, used = k, 0
            used += n
        out.append({**example, "words": example["words"][start:], "tags": example["tags"][start:]})
    return out


class Tagging(Labelled):
    """Examples: {"words", "tags"} (tag ids); gold and predicted are tag-name sequences, one per
    sentence piece (long sentences are split, as the official preprocessing does), over every
    word that has a subword."""

    name = "tagging"
    head_class = "XLMRobertaForTokenClassification"

    def head_kwargs(self, task: Any) -> dict[str, Any]:
        return label_maps(task)

    def check(self, task: Any, example: dict) -> str | None:
        words, tags = example.get("words"), example.get("tags")
        if not words:
            return "empty sentence"
        if any(not isinstance(w, str) or not w.strip() for w in words):
            return "empty word"
        if not isinstance(tags, list) or len(tags) != len(words):
            return "tags and words differ in length"
        return next((p for p in (label_problem(task, t) for t in tags) if p), None)

    def train_features(self, task: Any, tokenizer: Any, examples: list, max_length: int) -> list:
        """Each word's tag sits on its first subword; later subwords and specials get -100.
        A sentence longer than `max_length` subwords becomes several features, so that every
        word is scored (split_long_sentences)."""
        examples = split_long_sentences(tokenizer, examples, max_length)
        enc = tokenizer(
            [e["words"] for e in examples],
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
        )
        rows = []
        for i, example in enumerate(examples):
            labels, previous = [], None
            for word in enc.word_ids(i):
                first = word is not None and word != previous
                labels.append(example["tags"][word] if first else -100)
                previous = word
            rows.append({"input_ids": enc["input_ids"][i], "labels": labels})
        return rows

    def collator(self, task: Any, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def decode(self, task: Any, logits: torch.Tensor, labels: torch.Tensor) -> tuple[list, list]:
        """Tag-name sequences of the labelled (first-subword) positions."""
        gold_seqs, pred_seqs = [], []
        for gold_row, pred_row in zip(labels.tolist(), logits.argmax(-1).tolist(), strict=True):
            keep = [(g, p) for g, p in zip(gold_row, pred_row, strict=True) if g != -100]
            gold_seqs.append([task.labels[g] for g, _ in keep])
            pred_seqs.append([task.labels[p] for _, p in keep])
        return gold_seqs, pred_seqs

    def majority(self, task: Any, train: list, data: EvalSet) -> tuple[list, list]:
        top = task.labels[most_frequent([t for e in train for t in e["tags"]])]
        gold = [[task.labels[x] for x in f["labels"] if x != -100] for f in data.features]
        return gold, [[top] * len(g) for g in gold]

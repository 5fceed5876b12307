"""Retrieval formats (placeholder until written)."""

from trainers.heads.base import Format


class DualEncoder(Format):
    name = "dual_encoder"


class SentenceRetrieval(Format):
    name = "sentence_retrieval"
    trainable = False

"""Extractive span QA (placeholder until written)."""

from trainers.heads.base import Format


class SpanQA(Format):
    name = "qa"
    head_class = "XLMRobertaForQuestionAnswering"

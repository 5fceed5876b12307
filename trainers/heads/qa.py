"""Extractive span QA (XQuAD, MLQA, TyDiQA-GoldP; SQuAD v1.1 and 2.0 as intermediates).

Long contexts are split into overlapping windows and each window predicts a start and an end
token, as in the official XTREME recipe (HF `run_qa`): an answer is the best span over all windows
of its question, mapped back to characters of the context through the tokenizer's offsets.
"""

from __future__ import annotations

from typing import Any

import torch

from trainers.heads.base import EvalSet, Format, by_length, empty_text

MAX_QUESTION = 64  # tokens (official max_query_length): a long question cannot eat the window
DOC_STRIDE = 128  # tokens shared by neighbouring windows at the official max_length of 384
N_BEST = 20  # start and end candidates per window (official n_best_size)
MAX_ANSWER = 30  # tokens (official max_answer_length)


class SpanQA(Format):
    """Examples: {"id", "context", "question", "answers": {"text": [...], "answer_start": [...]}};
    empty answer lists are unanswerable (SQuAD 2.0). Gold is each question's answer texts (`[""]`
    when unanswerable), predicted one context substring per question ("" for no answer)."""

    name = "qa"
    head_class = "XLMRobertaForQuestionAnswering"

    def check(self, task: Any, example: dict) -> str | None:
        problem = empty_text(example, ("context", "question"))
        if problem:
            return problem
        answers = example.get("answers")
        if not isinstance(answers, dict):
            return "answers missing"
        texts, starts = answers.get("text"), answers.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            return "answer texts and starts differ in length"
        context = example["context"]
        for text, start in zip(texts, starts, strict=True):
            if not isinstance(text, str) or not text.strip():
                return "empty answer"
            if isinstance(start, bool) or not isinstance(start, int) or start < 0:
                return "answer start not a non-negative integer"
            if context[start : start + len(text)] != text:
                return "answer outside its context"
        return None

    def windows(self, tokenizer: Any, examples: list, max_length: int) -> Any:
        """Question + context windows of at most `max_length` tokens; `overflow_to_sample_mapping`
        names each window's example.

        The stride (tokens shared by neighbouring windows) is the official 128 at max_length 384
        and shrinks with shorter windows; the question keeps at most 64 tokens, or half the window
        when that is shorter, so every window has room for context beyond the stride.
        """
        limit = min(MAX_QUESTION, (max_length - 4) // 2)  # 4: <s> q </s></s> c </s>
        stride = min(DOC_STRIDE, max_length // 3)
        # leading spaces only cost tokens (run_qa strips them too); long questions are cut at a
        # token boundary, as the tokenizer cannot truncate the first sequence of an overflowing pair
        questions = [e["question"].lstrip() for e in examples]
        cut = tokenizer(
            questions,
            add_special_tokens=False,
            truncation=True,
            max_length=limit,
            return_offsets_mapping=True,
        )
        questions = [
            q[: offsets[-1][1]] if len(offsets) == limit else q
            for q, offsets in zip(questions, cut["offset_mapping"], strict=True)
        ]
        return tokenizer(
            questions,
            [e["context"] for e in examples],
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )

    def train_features(self, task: Any, tokenizer: Any, examples: list, max_length: int) -> list:
        """One feature per window; its positions are the first answer's tokens when that answer
        lies wholly inside the window, else 0 (<s>), the target for "not here" and "no answer"."""
        enc = self.windows(tokenizer, examples, max_length)
        rows = []
        for i, ids in enumerate(enc["input_ids"]):
            answers = examples[enc["overflow_to_sample_mapping"][i]]["answers"]
            start = end = 0
            if answers["text"]:
                first_char = answers["answer_start"][0]
                last_char = first_char + len(answers["text"][0])  # exclusive
                offsets, sequence = enc["offset_mapping"][i], enc.sequence_ids(i)
                context = [t for t, s in enumerate(sequence) if s == 1]
                if offsets[context[0]][0] <= first_char and offsets[context[-1]][1] >= last_char:
                    # run_qa's rule: the last token starting at or before the answer, the first
                    # ending at or after it (robust to answers that begin or end on a space)
                    start = max(t for t in context if offsets[t][0] <= first_char)
                    end = min(t for t in context if offsets[t][1] >= last_char)
            rows.append({"input_ids": ids, "start_positions": start, "end_positions": end})
        return rows

    def eval_set(
        self,
        task: Any,
        tokenizer: Any,
        examples: list,
        max_length: int,
        pool: list[dict] | None = None,
    ) -> EvalSet:
        """Windows as model inputs; `extra` keeps each window's example index and its character
        offsets (None outside the context), and whether "no answer" may be predicted."""
        enc = self.windows(tokenizer, examples, max_length)
        offsets = [
            [o if s == 1 else None for o, s in zip(row, enc.sequence_ids(i), strict=True)]
            for i, row in enumerate(enc["offset_mapping"])
        ]
        extra = {
            "example": list(enc["overflow_to_sample_mapping"]),
            "offsets": offsets,
            # SQuAD 2.0 style null answers only where the data has unanswerable questions: a
            # model trained on SQuAD v1.1 must always answer, as the official v1.1 evaluation does
            "null": any(not e["answers"]["text"] for e in examples),
        }
        features = [{"input_ids": ids} for ids in enc["input_ids"]]
        return EvalSet(features, examples, self.collator(task, tokenizer), extra)

    @torch.no_grad()
    def predict(
        self, task: Any, model: Any, data: EvalSet, batch_size: int, device: Any
    ) -> tuple[list, list]:
        """Best span over all windows of each question, in the order of `data.examples`.

        A span scores start logit + end logit among each window's top-20 starts and ends, inside
        the context, end >= start, at most 30 tokens. With `extra["null"]`, "" is predicted when
        the lowest <s> score over the question's windows beats the best span (SQuAD 2.0, no
        threshold).
        """
        best: dict[int, tuple[float, int, int]] = {}  # example -> (score, first char, last char)
        null: dict[int, float] = {}
        for idx in by_length(data.features, batch_size):
            batch = data.collate([data.features[i] for i in idx])
            out = model(**{k: v.to(device) for k, v in batch.items()})
            starts, ends = out.start_logits.float().cpu(), out.end_logits.float().cpu()
            for row, i in enumerate(idx):
                n = len(data.features[i]["input_ids"])
                offsets = data.extra["offsets"][i]
                example = data.extra["example"][i]
                s, e = starts[row, :n], ends[row, :n]
                null[example] = min(null.get(example, float("inf")), float(s[0] + e[0]))
                span = self.best_span(s, e, offsets)
                if span is not None and (example not in best or span[0] > best[example][0]):
                    best[example] = span
        gold, pred = [], []
        for k, example in enumerate(data.examples):
            gold.append(list(example["answers"]["text"]) or [""])
            if k not in best or (data.extra["null"] and null[k] > best[k][0]):
                pred.append("")
            else:
                pred.append(example["context"][best[k][1] : best[k][2]])
        return gold, pred

    @staticmethod
    def best_span(
        starts: torch.Tensor, ends: torch.Tensor, offsets: list
    ) -> tuple[float, int, int] | None:
        """(score, first char, end char) of one window's best span, or None when no top-20
        candidate pair is a valid span."""
        k = min(N_BEST, len(starts))
        start_score, start_idx = starts.topk(k)
        end_score, end_idx = ends.topk(k)
        in_context = torch.tensor([o is not None for o in offsets])
        length = end_idx[None, :] - start_idx[:, None]  # tokens - 1
        valid = (
            in_context[start_idx][:, None]
            & in_context[end_idx][None, :]
            & (length >= 0)
            & (length < MAX_ANSWER)
        )
        score = (start_score[:, None] + end_score[None, :]).masked_fill(~valid, -torch.inf)
        flat = int(score.argmax())
        if not valid.view(-1)[flat]:
            return None
        first, last = int(start_idx[flat // k]), int(end_idx[flat % k])
        return float(score.view(-1)[flat]), offsets[first][0], offsets[last][1]

    def majority(self, task: Any, train: list, data: EvalSet) -> None:
        return None  # no most-frequent answer exists for span extraction

import math
from types import SimpleNamespace

import pytest
import torch

from trainers.encoder import load_tokenizer
from trainers.heads import build_model
from trainers.heads.base import EvalSet
from trainers.heads.qa import SpanQA
from trainers.metrics import squad_f1_em
from trainers.tasks import get_task

QA = SpanQA()
TASK = get_task("xquad")
WORDS = [f"w{i:02d}" for i in range(40)]
CONTEXT = " ".join(WORDS)  # word j covers characters [4j, 4j + 3)


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return load_tokenizer(tiny_encoder)


def example(context, answer=None, question="which one?", start=None):
    start = context.index(answer) if answer is not None and start is None else start
    answers = (
        {"text": [answer], "answer_start": [start]} if answer else {"text": [], "answer_start": []}
    )
    return {"id": "q", "context": context, "question": question, "answers": answers}


# ---- windows and training targets ----


def test_answer_in_a_later_window_is_labelled_there_and_cls_elsewhere(tokenizer):
    ex = example(CONTEXT, "w35 w36")  # near the end: outside the first 32-token window
    feats = QA.train_features(TASK, tokenizer, [ex], max_length=32)
    enc = QA.windows(tokenizer, [ex], max_length=32)
    assert len(feats) == len(enc["input_ids"]) > 2
    assert set(feats[0]) == {"input_ids", "start_positions", "end_positions"}
    assert (feats[0]["start_positions"], feats[0]["end_positions"]) == (0, 0)
    first, last = ex["answers"]["answer_start"][0], ex["answers"]["answer_start"][0] + 7
    labelled = 0
    for i, feat in enumerate(feats):
        assert len(feat["input_ids"]) <= 32
        offsets, seq = enc["offset_mapping"][i], enc.sequence_ids(i)
        context = [t for t, s in enumerate(seq) if s == 1]
        inside = offsets[context[0]][0] <= first and offsets[context[-1]][1] >= last
        s, e = feat["start_positions"], feat["end_positions"]
        if not inside:
            assert (s, e) == (0, 0)
            continue
        labelled += 1
        assert seq[s] == seq[e] == 1 and s <= e
        assert (offsets[s][0], offsets[e][1]) == (first, last)  # exactly the answer's characters
        assert CONTEXT[offsets[s][0] : offsets[e][1]] == "w35 w36"
    assert labelled >= 1
    # neighbouring windows overlap (the stride): the next one starts before this one ends
    for i in range(len(feats) - 1):
        this = [
            o for o, s in zip(enc["offset_mapping"][i], enc.sequence_ids(i), strict=True) if s == 1
        ]
        nxt = [
            o
            for o, s in zip(enc["offset_mapping"][i + 1], enc.sequence_ids(i + 1), strict=True)
            if s == 1
        ]
        assert nxt[0][0] < this[-1][1]


def test_unanswerable_targets_cls_in_every_window(tokenizer):
    feats = QA.train_features(TASK, tokenizer, [example(CONTEXT)], max_length=32)
    assert len(feats) > 1
    assert all((f["start_positions"], f["end_positions"]) == (0, 0) for f in feats)


@pytest.mark.parametrize(("max_length", "limit"), [(48, 22), (384, 64)])
def test_long_question_is_capped_so_the_context_keeps_room(tokenizer, max_length, limit):
    # limit: 64 tokens (official max_query_length), or (max_length - 4) // 2 when shorter
    long_question = " ".join(WORDS * 6)
    context = " ".join(WORDS * 8)  # several windows even at 384 tokens
    enc = QA.windows(tokenizer, [example(context, "w01", question=long_question)], max_length)
    assert len(enc["input_ids"]) > 1
    for i in range(len(enc["input_ids"])):
        seq = enc.sequence_ids(i)
        assert len(seq) <= max_length
        assert 0 < seq.count(0) <= limit
        assert seq.count(1) > max_length // 3  # more context than the stride: windows advance


def test_collator_pads_train_features_with_their_positions(tokenizer):
    exs = [example(CONTEXT, "w05"), example("w01 w02", "w02")]
    feats = QA.train_features(TASK, tokenizer, exs, max_length=32)
    batch = QA.collator(TASK, tokenizer)(feats)
    assert set(batch) == {"input_ids", "attention_mask", "start_positions", "end_positions"}
    assert batch["start_positions"].tolist() == [f["start_positions"] for f in feats]
    assert batch["input_ids"].shape == (len(feats), max(len(f["input_ids"]) for f in feats))


# ---- decoding from hand-made logits ----


class FakeModel:
    """Returns the logits written for each window, found by its unpadded input ids."""

    def __init__(self, logits):
        self.logits = logits  # tuple(input_ids) -> (start logits, end logits)

    def __call__(self, input_ids, attention_mask):
        width = input_ids.shape[1]
        starts = torch.full(input_ids.shape, -100.0)
        ends = torch.full(input_ids.shape, -100.0)
        for row, (ids, mask) in enumerate(zip(input_ids, attention_mask, strict=True)):
            s, e = self.logits[tuple(ids[mask.bool()].tolist())]
            starts[row, : len(s)], ends[row, : len(e)] = torch.tensor(s), torch.tensor(e)
        assert starts.shape[1] == width
        return SimpleNamespace(start_logits=starts, end_logits=ends)


def window(words, tag):
    """Input ids, offsets and flat logits (-5) of <s> q </s> </s> words </s>; words index WORDS."""
    offsets = [None] * 4 + [(4 * j, 4 * j + 3) for j in words] + [None]
    ids = [0, tag, 2, 2, *(100 + tag * 50 + j for j in words), 2]
    return ids, offsets, [-5.0] * len(ids), [-5.0] * len(ids)


def eval_data(tokenizer, windows, examples, example_of, null):
    return EvalSet(
        [{"input_ids": w[0]} for w in windows],
        examples,
        QA.collator(TASK, tokenizer),
        {"example": example_of, "offsets": [w[1] for w in windows], "null": null},
    )


def test_best_span_over_windows_respects_order_and_length(tokenizer):
    w1 = window(range(10), tag=3)  # words 0-9
    w2 = window(range(5, 40), tag=4)  # words 5-39: 35 context tokens
    short = window(range(2), tag=5)  # second example: "w00 w01"
    t = 4  # first context token
    # every other logit is -5; the best valid pair of each window is what must come out
    w1[2][1] = w1[3][1] = 9.0  # question token: 18, the highest pair, but not in the context
    w1[2][t + 3], w1[3][t + 1] = 6.0, 6.0  # w03..w01: 12, but end before start
    w1[3][t + 5] = 2.0  # w03..w05: 8, the best valid span of window 1
    w2[2][t + 0], w2[3][t + 31] = 8.0, 8.0  # w05..w36: 16, but 32 tokens > 30
    w2[2][t + 33], w2[3][t + 34] = 4.0, 5.0  # w38..w39: 9, the best valid span overall
    short[2][t + 1], short[3][t + 1] = 3.0, 3.0  # w01
    logits = {tuple(w[0]): (w[2], w[3]) for w in (w1, w2, short)}
    examples = [example(CONTEXT, "w38 w39"), example("w00 w01", "w01")]
    # the short window of the second example is decoded first (length-sorted batches)
    data = eval_data(tokenizer, [w1, w2, short], examples, [0, 0, 1], null=False)
    gold, pred = QA.predict(TASK, FakeModel(logits), data, batch_size=2, device="cpu")
    assert gold == [["w38 w39"], ["w01"]]
    assert pred == ["w38 w39", "w01"]
    assert squad_f1_em(gold, pred) == 1.0


def test_null_answer_wins_only_when_cls_beats_every_span(tokenizer):
    lone = window(range(10), tag=3)
    w1, w2 = window(range(10), tag=4), window(range(5, 15), tag=5)
    t = 4
    lone[2][0] = lone[3][0] = 3.0  # null 6 > best span w02 (5): no answer
    lone[2][t + 2], lone[3][t + 2] = 2.5, 2.5
    w1[2][0] = w1[3][0] = 3.0  # null 6 here, but 1 in w2: the lowest null of the question counts
    w2[2][0] = w2[3][0] = 0.5
    w2[2][t + 2], w2[3][t + 3] = 2.5, 2.5  # w07..w08: 5 > 1
    logits = {tuple(w[0]): (w[2], w[3]) for w in (lone, w1, w2)}
    examples = [example(CONTEXT), example(CONTEXT, "w07 w08")]
    data = eval_data(tokenizer, [lone, w1, w2], examples, [0, 1, 1], null=True)
    gold, pred = QA.predict(TASK, FakeModel(logits), data, batch_size=8, device="cpu")
    assert gold == [[""], ["w07 w08"]]
    assert pred == ["", "w07 w08"]
    # a SQuAD v1.1 set (no unanswerable question) always answers
    data.extra["null"] = False
    assert QA.predict(TASK, FakeModel(logits), data, batch_size=8, device="cpu")[1][0] == "w02"


def test_eval_set_allows_null_only_with_unanswerable_questions(tokenizer):
    answerable = [example(CONTEXT, "w03")]
    data = QA.eval_set(TASK, tokenizer, answerable, max_length=32)
    assert data.extra["null"] is False
    assert len(data.extra["example"]) == len(data.extra["offsets"]) == len(data.features) > 1
    assert set(data.extra["example"]) == {0}
    assert all(set(f) == {"input_ids"} for f in data.features)
    for feature, offsets in zip(data.features, data.extra["offsets"], strict=True):
        assert len(offsets) == len(feature["input_ids"])
        assert offsets[0] is None and offsets[-1] is None  # <s>, </s>
    assert QA.eval_set(TASK, tokenizer, [*answerable, example(CONTEXT)], 32).extra["null"] is True


# ---- malformed examples ----


def test_check_catches_misplaced_and_empty_parts():
    good = example(CONTEXT, "w12")
    assert QA.check(TASK, good) is None
    assert QA.check(TASK, example(CONTEXT)) is None  # unanswerable is fine
    assert QA.check(TASK, example(CONTEXT, "w12", start=CONTEXT.index("w12") + 1)) == (
        "answer outside its context"
    )
    assert QA.check(TASK, example(CONTEXT, "w12", start=len(CONTEXT))) == (
        "answer outside its context"
    )
    assert QA.check(TASK, {**good, "context": "  "}) == "empty context"
    assert QA.check(TASK, {**good, "question": ""}) == "empty question"
    assert QA.check(TASK, {**good, "answers": {"text": ["w12"], "answer_start": []}}) == (
        "answer texts and starts differ in length"
    )


# ---- one real step ----


def test_one_training_step_and_prediction_on_the_tiny_encoder(tokenizer, tiny_encoder):
    torch.manual_seed(0)
    examples = [
        example(CONTEXT, "w31"),
        example(CONTEXT, "w02 w03"),
        example("w07 w08 w09", "w08"),
        example(CONTEXT),
    ]
    model = build_model(TASK, tiny_encoder)
    feats = QA.train_features(TASK, tokenizer, examples, max_length=48)
    batch = QA.collator(TASK, tokenizer)(feats)
    loss = model(**batch).loss
    assert math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()

    model.eval()
    data = QA.eval_set(TASK, tokenizer, examples, max_length=48)
    gold, pred = QA.predict(TASK, model, data, batch_size=3, device="cpu")
    assert gold == [["w31"], ["w02 w03"], ["w08"], [""]]
    assert len(pred) == 4
    assert all(
        isinstance(p, str) and p in ex["context"] for p, ex in zip(pred, examples, strict=True)
    )
    assert 0.0 <= squad_f1_em(gold, pred) <= 1.0
    assert QA.majority(TASK, examples, data) is None

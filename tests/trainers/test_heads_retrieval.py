"""Retrieval formats: the in-batch loss by hand, duplicate masking, top-20 ranking, Tatoeba's
direction and pooled layer, and real training steps of the dual encoder on the tiny encoder."""

import math
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import tiny_settings
from trainers.encoder import load_tokenizer
from trainers.heads import get_format
from trainers.heads.retrieval import (
    TEMPERATURE,
    DualEncoder,
    SentenceRetrieval,
    embed_all,
    in_batch_loss,
    pad_collator,
    pooled_layer,
)
from trainers.metrics import map_at_20, mewslix_mrr_at_20, tatoeba_accuracy
from trainers.tasks import get_task
from trainers.world import World

DUAL, SENT = DualEncoder(), SentenceRetrieval()
MEWSLIX, TATOEBA = get_task("mewslix"), get_task("tatoeba")


def unit(degrees):
    rad = math.radians(degrees)
    return [math.cos(rad), math.sin(rad)]


class WordTokenizer:
    """One id per whitespace word from a fixed vocabulary, no specials; pad id 0."""

    pad_token_id = 0

    def __init__(self, words):
        self.ids = {w: i + 1 for i, w in enumerate(words)}

    def __call__(self, texts, truncation=True, max_length=512):
        return {"input_ids": [[self.ids[w] for w in t.split()][:max_length] for t in texts]}


class TableModel:
    """A stand-in encoder: hidden_states[k] looks each token up in tables[k] (no context)."""

    def __init__(self, tables):
        self.tables = [torch.tensor(t, dtype=torch.float) for t in tables]
        self.config = SimpleNamespace(num_hidden_layers=len(tables) - 1)

    def __call__(self, input_ids, attention_mask, output_hidden_states=False):
        states = tuple(t[input_ids] for t in self.tables)
        return SimpleNamespace(last_hidden_state=states[-1], hidden_states=states)


@pytest.fixture(scope="module")
def sentences():
    """Distinct synthetic English sentences, so the tiny tokenizer knows their words."""
    world = World(tiny_settings()[0])
    return list(dict.fromkeys(world.corpus("en", 60, seed=11)))[:12]


# ---- the in-batch loss ----


def test_in_batch_loss_is_the_hand_cross_entropy():
    q = torch.tensor([[3.0, 0.0], [0.0, 0.5]])  # unnormalized: the loss normalizes
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # by hand: cosines [[1, 0.6], [0, 0.8]] / 0.05 = [[20, 12], [0, 16]]; target the diagonal
    row0 = math.log(1 + math.exp(12 - 20))
    row1 = math.log(1 + math.exp(0 - 16))
    assert TEMPERATURE == 0.05
    assert in_batch_loss(q, p).item() == pytest.approx((row0 + row1) / 2, rel=1e-5)


def test_duplicate_positive_leaves_the_other_querys_softmax():
    q = torch.eye(3)
    p = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 0 and 1 share a text
    same = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    # by hand, logits [[20, 20, 0], [0, 0, 0], [0, 0, 20]]; masked: q0 drops p1, q1 drops p0
    masked = (math.log(1 + math.exp(-20)) + math.log(2) + math.log(1 + 2 * math.exp(-20))) / 3
    unmasked = (math.log(2 + math.exp(-20)) + math.log(3) + math.log(1 + 2 * math.exp(-20))) / 3
    assert in_batch_loss(q, p, same).item() == pytest.approx(masked, rel=1e-5)
    assert in_batch_loss(q, p).item() == pytest.approx(unmasked, rel=1e-5)


def test_format_loss_finds_duplicate_positives_in_the_batch():
    words = ["a", "b", "c", "x", "y"]
    tok = WordTokenizer(words)
    table = [[0.0, 0.0], unit(0), unit(90), unit(200), unit(0), unit(90)]  # pad, a, b, c, x, y
    model = TableModel([table])
    examples = [
        {"query": "a", "positive": "x"},
        {"query": "b", "positive": "x"},  # same positive text as the first
        {"query": "c", "positive": "y"},
    ]
    batch = DUAL.collator(MEWSLIX, tok)(DUAL.train_features(MEWSLIX, tok, examples, 16))
    q = torch.tensor([unit(0), unit(90), unit(200)])
    p = torch.tensor([unit(0), unit(0), unit(90)])
    same = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    expected = in_batch_loss(q, p, same).item()
    assert DUAL.loss(model, batch).item() == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(in_batch_loss(q, p).item(), rel=1e-3)


def test_collator_pads_both_sides_with_masks():
    tok = WordTokenizer(["a", "b", "c"])
    features = DUAL.train_features(
        MEWSLIX, tok, [{"query": "a b c", "positive": "a"}, {"query": "b", "positive": "c a"}], 16
    )
    assert features[0] == {"query_ids": [1, 2, 3], "positive_ids": [1]}
    assert [DUAL.length(f) for f in features] == [3, 2]
    batch = DUAL.collator(MEWSLIX, tok)(features)
    assert batch["query_input_ids"].tolist() == [[1, 2, 3], [2, 0, 0]]
    assert batch["query_attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["positive_input_ids"].tolist() == [[1, 0], [3, 1]]
    assert batch["positive_attention_mask"].tolist() == [[1, 0], [1, 1]]


# ---- dual-encoder ranking ----


def test_ranking_returns_the_top_20_pool_ids_best_first():
    # candidate k lies at 7k degrees from the query direction; k = 0..24, listed out of order
    order = [
        13,
        2,
        24,
        0,
        7,
        19,
        5,
        11,
        22,
        1,
        16,
        9,
        3,
        20,
        14,
        6,
        23,
        10,
        17,
        4,
        21,
        8,
        15,
        12,
        18,
    ]
    words = ["q", *[f"w{k}" for k in range(25)]]
    tok = WordTokenizer(words)
    table = [[0.0, 0.0], unit(90), *[unit(90 - 7 * k) for k in range(25)]]
    # repeated words keep the mean but vary the length: exercises the length-sorted batches
    pool = [{"id": f"c{k}", "text": " ".join([f"w{k}"] * (1 + k % 4))} for k in order]
    examples = [{"query": "q", "gold": ["c0"]}, {"query": "q q", "gold": ["c3", "c1"]}]
    data = DUAL.eval_set(MEWSLIX, tok, examples, 16, pool=pool)
    gold, ranked = DUAL.predict(MEWSLIX, TableModel([table]), data, batch_size=3, device="cpu")
    assert gold == [["c0"], ["c3", "c1"]]
    assert ranked == [[f"c{k}" for k in range(20)]] * 2
    assert mewslix_mrr_at_20(gold, ranked) == pytest.approx((1 + 1 / 4) / 2)
    # second query: golds at ranks 2 and 4, AP = (1/2 + 2/4) / 2
    assert map_at_20(gold, ranked) == pytest.approx((1 + 0.5) / 2)


def test_dual_encoder_needs_its_pool():
    with pytest.raises(ValueError, match="pool"):
        DUAL.eval_set(MEWSLIX, WordTokenizer(["q"]), [{"query": "q", "gold": ["c"]}], 16)


def test_dual_encoder_check_reasons():
    assert DUAL.check(MEWSLIX, {"query": "who", "positive": "him"}) is None
    assert DUAL.check(MEWSLIX, {"query": "who", "gold": ["Q1"]}) is None
    assert DUAL.check(MEWSLIX, {"query": " ", "positive": "him"}) == "empty query"
    assert DUAL.check(MEWSLIX, {"positive": "him"}) == "empty query"
    assert DUAL.check(MEWSLIX, {"query": "who", "positive": ""}) == "empty positive"
    assert DUAL.check(MEWSLIX, {"query": "who", "gold": []}) == "no gold ids"
    assert DUAL.check(MEWSLIX, {"query": "who"}) == "no gold ids"
    assert DUAL.majority(MEWSLIX, [], None) is None


# ---- Tatoeba ----


def test_tatoeba_indexes_xx_and_queries_with_english():
    # layer 0: source j equals target j; layer 1: source j points where target j-1 does
    n = 4
    words = [f"t{i}" for i in range(n)] + [f"s{i}" for i in range(n)]
    tok = WordTokenizer(words)
    pad = [0.0, 0.0]
    layer0 = [pad] + [unit(90 * i) for i in range(n)] * 2
    layer1 = [pad] + [unit(90 * i) for i in range(n)] + [unit(90 * (j - 1)) for j in range(n)]
    model = TableModel([layer0, layer1])  # num_hidden_layers = 1, so the default is layer 1
    examples = [{"source": f"s{i}", "target": f"t{i}"} for i in range(n)]
    data = SENT.eval_set(TATOEBA, tok, examples, 16)
    as_task = {layer: SimpleNamespace(name="t", layer=layer) for layer in (0, None)}
    assert SENT.predict(as_task[0], model, data, 2, "cpu") == ([0, 1, 2, 3], [0, 1, 2, 3])
    # English target i is nearest to xx source i + 1 (the other direction would give i - 1)
    assert SENT.predict(as_task[None], model, data, 2, "cpu") == ([0, 1, 2, 3], [1, 2, 3, 0])


def test_tatoeba_identical_sides_score_one_and_a_permutation_its_gold(tiny_encoder, sentences):
    tok = load_tokenizer(tiny_encoder)
    for random_init in (False, True):  # any encoder: identical text, identical embedding
        torch.manual_seed(0)
        model = SENT.build_model(TATOEBA, tiny_encoder, random_init=random_init).eval()
        same = SENT.eval_set(TATOEBA, tok, [{"source": s, "target": s} for s in sentences], 48)
        gold, pred = SENT.predict(TATOEBA, model, same, 5, "cpu")
        assert gold == list(range(len(sentences)))
        assert tatoeba_accuracy(gold, pred) == 1.0
    # swap pairs (0 1) (2 3) (4 5), keep the rest: English i is found at the xx position perm[i]
    perm = [1, 0, 3, 2, 5, 4, *range(6, len(sentences))]
    shuffled = [{"source": sentences[perm[i]], "target": sentences[i]} for i in range(len(perm))]
    gold, pred = SENT.predict(TATOEBA, model, SENT.eval_set(TATOEBA, tok, shuffled, 48), 5, "cpu")
    assert pred == perm
    assert tatoeba_accuracy(gold, pred) == pytest.approx((len(perm) - 6) / len(perm))


def test_pooled_layer_is_the_one_asked_for(tiny_encoder, sentences):
    tok = load_tokenizer(tiny_encoder)
    model = SENT.build_model(TATOEBA, tiny_encoder).eval()
    assert type(model).__name__ == "XLMRobertaModel" and model.pooler is None
    features = [{"input_ids": ids} for ids in tok(sentences[:5])["input_ids"]]
    collate = pad_collator(tok.pad_token_id)
    batch = collate(features)
    with torch.no_grad():
        states = model(**batch, output_hidden_states=True).hidden_states
    pooled = {}
    for layer in (0, 1):
        mask = batch["attention_mask"].unsqueeze(-1).float()
        manual = (states[layer] * mask).sum(1) / mask.sum(1)
        manual = manual / manual.norm(dim=-1, keepdim=True)
        pooled[layer] = embed_all(model, features, collate, 2, "cpu", layer=layer)
        assert torch.allclose(pooled[layer], manual, atol=1e-5)
    assert not torch.allclose(pooled[0], pooled[1], atol=1e-2)
    config = SimpleNamespace(num_hidden_layers=24)
    assert pooled_layer(SimpleNamespace(layer=None), config) == 12
    assert pooled_layer(SimpleNamespace(layer=7), config) == 7
    assert pooled_layer(SimpleNamespace(layer=None), model.config) == 1  # never the embeddings


def test_sentence_retrieval_is_not_trained():
    assert not SENT.trainable and DUAL.trainable
    assert get_format(TATOEBA.format) is not None and TATOEBA.format == SENT.name
    with pytest.raises(NotImplementedError, match="scored straight from an encoder"):
        SENT.train_features(TATOEBA, None, [{"source": "a", "target": "b"}], 16)
    assert SENT.check(TATOEBA, {"source": "x", "target": "y"}) is None
    assert SENT.check(TATOEBA, {"source": "", "target": "y"}) == "empty source"
    assert SENT.check(TATOEBA, {"source": "x"}) == "empty target"


# ---- training the dual encoder ----


def test_dual_encoder_training_steps_lower_the_in_batch_loss(tiny_encoder, sentences):
    torch.manual_seed(0)
    tok = load_tokenizer(tiny_encoder)
    model = DUAL.build_model(MEWSLIX, tiny_encoder)
    assert type(model).__name__ == "XLMRobertaModel" and model.pooler is None
    # each query's positive is the next sentence: 8 distinct pairs, 7 in-batch negatives each
    examples = [{"query": sentences[i], "positive": sentences[i + 1]} for i in range(8)]
    batch = DUAL.collator(MEWSLIX, tok)(DUAL.train_features(MEWSLIX, tok, examples, 48))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def eval_loss():  # without dropout: before and after compare the same function
        model.eval()
        with torch.no_grad():
            return DUAL.loss(model, batch).item()

    before = eval_loss()
    model.train()
    losses = []
    for _ in range(6):
        loss = DUAL.loss(model, batch)
        loss.backward()
        # no parameter without a gradient (DistributedDataParallel would refuse one)
        assert all(p.grad is not None for p in model.parameters())
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in [before, *losses])
    assert losses[-1] < losses[0], losses
    assert eval_loss() < before

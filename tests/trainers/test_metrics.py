import pytest

from trainers.metrics import accuracy, primary_metric, score, tagging_f1, token_accuracy


def test_pos_f1_is_chunk_level_not_token_accuracy():
    gold, pred = [["NOUN", "NOUN", "VERB"]], [["NOUN", "VERB", "VERB"]]
    # by hand: seqeval reads no scheme, so equal neighbours merge: gold chunks {NOUN 0-1, VERB 2},
    # predicted {NOUN 0, VERB 1-2}; no chunk matches exactly -> F1 0, while 2 of 3 tokens agree
    assert tagging_f1(gold, pred) == 0.0
    assert token_accuracy(gold, pred) == pytest.approx(2 / 3)


def test_tagging_f1_partial_match_by_hand():
    gold = [["DET", "NOUN", "VERB", "DET", "NOUN"]]
    pred = [["DET", "NOUN", "VERB", "DET", "VERB"]]
    # gold chunks: DET0 NOUN1 VERB2 DET3 NOUN4 (5); pred: DET0 NOUN1 VERB2 DET3 VERB4 (5); 4 match
    # precision = recall = 4/5 -> F1 0.8; token accuracy 4/5
    assert tagging_f1(gold, pred) == pytest.approx(0.8)
    assert token_accuracy(gold, pred) == pytest.approx(0.8)


def test_accuracy_and_family():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx(0.75)
    assert score("classification", [1, 1], [1, 0]) == {"accuracy": 0.5}
    assert primary_metric("tagging") == "f1"
    assert primary_metric("classification") == "accuracy"


@pytest.mark.parametrize(
    ("fn", "gold", "pred", "message"),
    [
        (accuracy, [0, 1], [0], "2 gold labels but 1 predictions"),
        (token_accuracy, [["NOUN"]], [["NOUN", "VERB"]], "sentence 0 has 1 gold tags but 2"),
        (tagging_f1, [["NOUN"]], [], "1 gold sentences but 0 predicted"),
    ],
)
def test_length_mismatch_is_an_error(fn, gold, pred, message):
    with pytest.raises(ValueError, match=message):
        fn(gold, pred)

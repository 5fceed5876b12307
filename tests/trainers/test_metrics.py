import json
import warnings
from pathlib import Path

import pytest

from trainers.metrics import (
    accuracy,
    average_precision_at_k,
    benchmark_averages,
    language_average,
    map_at_20,
    mewslix_mrr_at_20,
    mlqa_exact_match,
    mlqa_f1,
    mlqa_f1_em,
    mlqa_normalize,
    primary_metric,
    score,
    squad_exact_match,
    squad_f1,
    squad_f1_em,
    squad_normalize,
    tag_chunks,
    tagging_f1,
    tagging_f1_seqeval122,
    tatoeba_accuracy,
    token_accuracy,
)
from trainers.tasks import TARGETS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "metrics"

# --- tagging ---


def test_pos_f1_is_chunk_level_not_token_accuracy():
    gold, pred = [["NOUN", "NOUN", "VERB"]], [["NOUN", "VERB", "VERB"]]
    # by hand: seqeval reads no scheme, so equal neighbours merge: gold chunks {NOUN 0-1, VERB 2},
    # predicted {NOUN 0, VERB 1-2}; no chunk matches exactly -> F1 0, while 2 of 3 tokens agree
    assert tagging_f1(gold, pred) == 0.0
    assert tagging_f1_seqeval122(gold, pred) == 0.0
    assert token_accuracy(gold, pred) == pytest.approx(2 / 3)


def test_tagging_f1_partial_match_by_hand():
    gold = [["DET", "NOUN", "VERB", "DET", "NOUN"]]
    pred = [["DET", "NOUN", "VERB", "DET", "VERB"]]
    # gold chunks: DET0 NOUN1 VERB2 DET3 NOUN4 (5); pred: DET0 NOUN1 VERB2 DET3 VERB4 (5); 4 match
    # precision = recall = 4/5 -> F1 0.8; token accuracy 4/5
    assert tagging_f1(gold, pred) == pytest.approx(0.8)
    assert tagging_f1_seqeval122(gold, pred) == pytest.approx(0.8)
    assert token_accuracy(gold, pred) == pytest.approx(0.8)


def test_chunks_by_hand_in_both_versions():
    # offsets run over the sentences joined by one 'O' each: [CCONJ SCONJ O X O]
    sentences = [["CCONJ", "SCONJ"], ["X"]]
    # 0.0.12: a plain tag is its own type, so each tag is a chunk
    assert tag_chunks(sentences, "0.0.12") == {("CCONJ", 0, 0), ("SCONJ", 1, 1), ("X", 3, 3)}
    # 1.2.2: CCONJ and SCONJ are both type CONJ; SCONJ's 'S' prefix restarts the chunk at 1 without
    # closing the one begun at 0, so CCONJ is lost; X has type '_' like O, so its chunk never ends
    assert tag_chunks(sentences, "1.2.2") == {("CONJ", 1, 1)}


@pytest.mark.parametrize(
    ("gold", "pred", "official", "seqeval122"),
    [
        # X at a sentence end. 0.0.12: gold {VERB0, X1}, pred {VERB0, NOUN1}: 1 of 2 and 1 of 2
        # -> F1 0.5. 1.2.2 loses the X chunk: gold {ERB0}, pred {ERB0, OUN1}: P 1/2, R 1/1
        # -> F1 2*(1/2)(1)/(3/2) = 2/3
        ([["VERB", "X"]], [["VERB", "NOUN"]], 0.5, 2 / 3),
        # CCONJ then SCONJ. 0.0.12: gold {CCONJ0, SCONJ1}, pred {CCONJ0, VERB1} -> P = R = 1/2
        # -> 0.5. 1.2.2: gold {CONJ1} (CCONJ lost, see above), pred {CONJ0, ERB1} -> 0 correct
        ([["CCONJ", "SCONJ"]], [["CCONJ", "VERB"]], 0.5, 0.0),
        # several hyphens. 0.0.12 types by the last part: B-LOC-CITY I-ORG-CITY is one CITY chunk
        # 0-1, pred one CITY chunk 0 -> 0. 1.2.2 types LOC-CITY / ORG-CITY: gold {LOC-CITY0,
        # ORG-CITY1}, pred {LOC-CITY0}: P 1, R 1/2 -> 2/3
        ([["B-LOC-CITY", "I-ORG-CITY"]], [["B-LOC-CITY", "O"]], 0.0, 2 / 3),
    ],
)
def test_official_and_seqeval122_differ(gold, pred, official, seqeval122):
    assert tagging_f1(gold, pred) == pytest.approx(official)
    assert tagging_f1_seqeval122(gold, pred) == pytest.approx(seqeval122)


def test_ner_f1_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG"]]
    # gold {PER 0-1, LOC 3, ORG 6}, pred {PER 0-1, ORG 3, ORG 6}: 2 of 3 each way -> F1 2/3
    assert tagging_f1(gold, pred) == pytest.approx(2 / 3)
    assert tagging_f1_seqeval122(gold, pred) == pytest.approx(2 / 3)


def test_perfect_all_o_prediction_scores_zero():
    # no chunk on either side: precision and recall count as 0, so F1 is 0, not 1
    gold = pred = [["O", "O"], ["O"]]
    assert tagging_f1(gold, pred) == 0.0
    assert tagging_f1_seqeval122(gold, pred) == 0.0
    assert token_accuracy(gold, pred) == 1.0


def _mock(task: str) -> dict:
    return json.loads((FIXTURES / f"xtreme_mock_{task}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "cases",
    [
        [([["VERB", "X"]], [["VERB", "NOUN"]]), ([["CCONJ", "SCONJ"]], [["CCONJ", "VERB"]])],
        [([["B-LOC-CITY", "I-ORG-CITY"]], [["B-LOC-CITY", "O"]])],
        [(v["gold"], v["pred"]) for v in _mock("udpos")["languages"].values()],
        [(v["gold"], v["pred"]) for v in _mock("panx")["languages"].values()],
    ],
)
def test_seqeval122_variant_is_installed_seqeval(cases):
    seqeval = pytest.importorskip("seqeval.metrics")
    from importlib.metadata import version

    if version("seqeval") != "1.2.2":
        pytest.skip("the variant mirrors seqeval 1.2.2 exactly")
    for gold, pred in cases:
        with warnings.catch_warnings():  # "NOUN seems not to be NE tag": the quirk, expected
            warnings.simplefilter("ignore")
            expected = seqeval.f1_score(gold, pred)
        assert tagging_f1_seqeval122(gold, pred) == pytest.approx(expected)


# --- the official repository's mock submission ---

_OFFICIAL_FUNCTIONS = {
    "udpos": {"f1": tagging_f1},
    "panx": {"f1": tagging_f1},
    "xnli": {"accuracy": accuracy},
    "tatoeba": {"accuracy": tatoeba_accuracy},
    "xquad": {"f1": squad_f1, "exact_match": squad_exact_match},
    "tydiqa": {"f1": squad_f1, "exact_match": squad_exact_match},
    "mlqa": {"f1": mlqa_f1, "exact_match": mlqa_exact_match},
    "mewslix": {"map@20": mewslix_mrr_at_20},
}


@pytest.mark.parametrize("task", sorted(_OFFICIAL_FUNCTIONS))
def test_agrees_with_official_scores_of_the_xtreme_mock_submission(task):
    # fixture: google-research/xtreme mock_test_data, scored by its own evaluate.py (per language)
    # and evaluate_test.py (averages); see the fixture's "source" and "how"
    mock = _mock(task)
    languages = list(mock["languages"])
    for metric, fn in _OFFICIAL_FUNCTIONS[task].items():
        ours = {}
        for lang, case in mock["languages"].items():
            extra = (lang,) if task == "mlqa" else ()
            ours[lang] = fn(case["gold"], case["pred"], *extra)
            assert ours[lang] == pytest.approx(case["official_percent"][metric] / 100), lang
        expected = mock["official_avg_percent"][f"avg_{metric}"] / 100
        assert language_average(ours, languages) == pytest.approx(expected, abs=1e-12)


def test_official_udpos_numbers_need_the_0012_chunking():
    mock = _mock("udpos")
    languages = list(mock["languages"])
    f1_122 = {k: tagging_f1_seqeval122(v["gold"], v["pred"]) for k, v in mock["languages"].items()}
    # evaluate_test.py expects 70.2175; seqeval 1.2.2 gives 70.3981 on the same files
    assert language_average(f1_122, languages) == pytest.approx(0.7039805810699043)


# --- QA ---


def test_squad_normalization():
    # lowercase, ASCII punctuation out, a/an/the out as whole words, whitespace squeezed
    assert squad_normalize("  The  Eiffel-Tower, (an icon)!") == "eiffeltower icon"
    assert squad_normalize("Theatre") == "theatre"
    # SQuAD drops ASCII punctuation only: curly quotes stay (MLQA drops them)
    assert squad_normalize("“Paris”") == "“paris”"


def test_squad_f1_em_with_multiple_answers_by_hand():
    gold = [["the Eiffel Tower", "Eiffel Tower in Paris"], ["1889"], ["A Paris"]]
    pred = ["Tower in Paris!", "in 1889", "paris."]
    # q1: pred "tower in paris" (3 tokens). vs "eiffel tower": 1 common, P 1/3 R 1/2 -> F1 2/5;
    #     vs "eiffel tower in paris": 3 common, P 1 R 3/4 -> 6/7; max 6/7, EM 0
    # q2: "in 1889" vs "1889": P 1/2 R 1 -> 2/3, EM 0
    # q3: "paris" == "paris" -> F1 1, EM 1
    f1 = (6 / 7 + 2 / 3 + 1) / 3
    em = 1 / 3
    assert squad_f1(gold, pred) == pytest.approx(f1)
    assert squad_exact_match(gold, pred) == pytest.approx(em)
    assert squad_f1_em(gold, pred) == pytest.approx((f1 + em) / 2)
    assert score("qa", gold, pred) == pytest.approx(
        {"f1_em": (f1 + em) / 2, "f1": f1, "exact_match": em}
    )


def test_empty_against_empty_is_exact_match_but_f1_zero():
    # "The" and "a." both normalize to "": equal strings (EM 1) but no shared token (F1 0), as in
    # the official evaluate_squad.py / evaluate_mlqa.py
    assert squad_exact_match([["The"]], ["a."]) == 1.0
    assert squad_f1([["The"]], ["a."]) == 0.0
    assert mlqa_exact_match([["los"]], ["¿las?"], "es") == 1.0
    assert mlqa_f1([["los"]], ["¿las?"], "es") == 0.0


def test_unanswered_question_scores_zero_but_counts():
    # official: a question with no prediction adds 0 to both sums and 1 to the total
    assert squad_f1([["Paris"], ["Rome"]], ["Paris", None]) == 0.5
    assert squad_exact_match([["Paris"], ["Rome"]], ["Paris", None]) == 0.5


@pytest.mark.parametrize(
    ("language", "text", "normalized"),
    [
        # zh: each CJK character is a token, other runs split on whitespace; "(" ")" "，" dropped
        ("zh", "电化电池(emf)", "电 化 电 池 emf"),
        ("zh", "Python 语言，很好", "python 语 言 很 好"),
        # ar: ال is removed wherever it occurs, replaced by a space; inside a word that splits it
        ("ar", "الكتاب", "كتاب"),
        ("ar", "فالكتاب", "ف كتاب"),
        ("ar", "المال؟", "م"),  # ال + م + ال: both ال go; "؟" (Arabic question mark) is punctuation
        # de: articles as whole words only; punctuation goes first, so "der-Hund" is one word
        ("de", "Die Katze des Nachbarn", "katze nachbarn"),
        ("de", "Diese Katze, der-Hund", "diese katze derhund"),
        # es: articles go, as do ¿ and ¡ (Unicode punctuation)
        ("es", "¡Los Ángeles!", "ángeles"),
        ("es", "unas estructuras, lasaña", "estructuras lasaña"),
        # vi: của là cái chiếc những as whole words ("làm" stays)
        ("vi", "Cái bàn của tôi", "bàn tôi"),
        ("vi", "những người làm", "người làm"),
        # en: like SQuAD, but Unicode punctuation (curly quotes, em dash) is dropped too; dropped
        # punctuation leaves no space, so "U.S.”—an" becomes one word "usan" and "an" survives
        ("en", "“The U.S.” — an ally", "us ally"),
        ("en", "“The U.S.”—an ally", "usan ally"),
        # hi: no articles; the danda "।" is punctuation
        ("hi", "भारत।", "भारत"),
    ],
)
def test_mlqa_normalization(language, text, normalized):
    assert mlqa_normalize(text, language) == normalized


def test_mlqa_zh_mixed_segmentation_gives_partial_credit():
    gold, pred = [["电化电池"]], ["电池"]
    # tokens: pred [电 池], gold [电 化 电 池]; common 电, 池 = 2: P 2/2, R 2/4 -> F1 2/3, EM 0
    assert mlqa_f1(gold, pred, "zh") == pytest.approx(2 / 3)
    assert mlqa_exact_match(gold, pred, "zh") == 0.0
    # SQuAD normalization keeps "电池" and "电化电池" as single tokens: no credit
    assert squad_f1(gold, pred) == 0.0


def test_mlqa_arabic_article_inside_a_word():
    # "فالكتاب" -> [ف كتاب] vs "الكتاب" -> [كتاب]: 1 common, P 1/2, R 1 -> F1 2/3, EM 0
    assert mlqa_f1([["الكتاب"]], ["فالكتاب"], "ar") == pytest.approx(2 / 3)
    assert mlqa_exact_match([["الكتاب"]], ["فالكتاب"], "ar") == 0.0
    # with the article removed both are "كتاب": EM 1; F1/EM averaged -> 1
    assert mlqa_f1_em([["الكتاب"]], ["كتاب"], "ar") == 1.0


def test_mlqa_needs_a_known_language():
    with pytest.raises(ValueError, match="unknown answer language 'fr'"):
        mlqa_normalize("le chat", "fr")
    with pytest.raises(ValueError, match="language of the examples is needed"):
        score("qa_mlqa", [["a"]], ["a"])
    assert score("qa_mlqa", [["der Hund"]], ["Hund"], language="de")["exact_match"] == 1.0


# --- retrieval ---


def test_map_at_20_with_gold_outside_top_20():
    ranked_far = [f"c{i}" for i in range(30)]
    # q1: the only gold "c20" is at rank 21 -> AP@20 = 0
    # q2: the only gold "c1" is at rank 2 -> AP = (1/2) / min(1, 20) = 0.5
    assert average_precision_at_k({"c20"}, ranked_far, 20) == 0.0
    assert map_at_20([{"c20"}, {"c1"}], [ranked_far, ranked_far]) == pytest.approx(0.25)


def test_average_precision_by_hand():
    # gold {a b c}, c beyond rank 20: hits at rank 1 (1/1) and rank 3 (2/3): (5/3) / 3 = 5/9
    ranked = ["a", "x", "b", *[f"y{i}" for i in range(20)], "c"]
    assert average_precision_at_k({"a", "b", "c"}, ranked, 20) == pytest.approx(5 / 9)
    # a repeated prediction is not a second hit: [a a b]: 1/1 + 2/3 = 5/3, / 2 gold -> 5/6
    assert average_precision_at_k({"a", "b"}, ["a", "a", "b"], 20) == pytest.approx(5 / 6)
    # more gold than k: 20 hits of 25 gold, each precision 1: 20 / min(25, 20) = 1
    gold = {f"g{i}" for i in range(25)}
    assert average_precision_at_k(gold, sorted(gold), 20) == 1.0


def test_mewslix_map20_is_mrr_of_the_first_stripped_gold_id():
    gold = [[" Q1\n", "Q2"], ["Q7"], ["Q9"]]
    ranked = [
        ["Q2", "Q1"],  # only the first gold id counts, stripped to "Q1": rank 2 -> 1/2
        [" Q7", "Q7"],  # predictions are not stripped: " Q7" misses, "Q7" at rank 2 -> 1/2
        [*[f"Q{i}" for i in range(100, 120)], "Q9"],  # rank 21, beyond 20 -> 0
    ]
    # mean (1/2 + 1/2 + 0) / 3 = 1/3
    assert mewslix_mrr_at_20(gold, ranked) == pytest.approx(1 / 3)
    assert score("retrieval_mrr", gold, ranked) == pytest.approx({"mrr@20": 1 / 3})


def test_tatoeba_accuracy_of_top1_indices():
    # 3 of 4 nearest neighbours are the parallel sentence -> 0.75
    assert tatoeba_accuracy([0, 1, 2, 3], [0, 2, 2, 3]) == 0.75
    assert score("retrieval_top1", [0, 1], [0, 1]) == {"accuracy": 1.0}


# --- averages ---


def test_language_average_over_the_given_languages():
    scores = {"en": 0.9, "de": 0.7, "zh": 0.5}
    assert language_average(scores, ["de", "zh"]) == pytest.approx(0.6)  # (0.7 + 0.5) / 2
    assert language_average(scores, ["en", "de", "zh"]) == pytest.approx(0.7)  # 2.1 / 3
    with pytest.raises(ValueError, match="no score for ar"):
        language_average(scores, ["ar", "de"])


def test_both_benchmark_averages_on_a_small_table():
    tasks = {
        "xnli": 0.8, "xcopa": 0.6,  # classification mean 0.7
        "udpos": 0.75, "panx": 0.65,  # structured prediction mean 0.7
        "xquad": 0.7, "mlqa": 0.6, "tydiqa": 0.5,  # QA mean 0.6 (each already (F1 + EM) / 2)
        "tatoeba": 0.9,  # retrieval mean 0.9
    }  # fmt: skip
    categories = {t.name: t.category for t in TARGETS if t.source}  # the ten real targets
    assert len(categories) == 10 and len(set(categories.values())) == 4
    averages = benchmark_averages(tasks, categories)
    # paper's Avg: (0.7 + 0.7 + 0.6 + 0.9) / 4 = 0.725; evaluate.py all_task: 5.5 / 8 = 0.6875
    assert averages == pytest.approx({"xtreme_r_avg": 0.725, "plain_mean": 0.6875})
    with pytest.raises(ValueError, match="no category for pos"):
        benchmark_averages({"pos": 0.5}, categories)


# --- families ---


def test_accuracy_and_family():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx(0.75)
    assert score("classification", [1, 1], [1, 0]) == {"accuracy": 0.5}
    assert primary_metric("tagging") == "f1"
    assert primary_metric("classification") == "accuracy"
    assert primary_metric("qa") == primary_metric("qa_mlqa") == "f1_em"
    assert primary_metric("retrieval_map") == "map@20"


@pytest.mark.parametrize(
    ("fn", "gold", "pred", "message"),
    [
        (accuracy, [0, 1], [0], "2 gold labels but 1 predictions"),
        (token_accuracy, [["NOUN"]], [["NOUN", "VERB"]], "sentence 0 has 1 gold tags but 2"),
        (tagging_f1, [["NOUN"]], [], "1 gold sentences but 0 predicted"),
        (tagging_f1_seqeval122, [["NOUN"]], [["NOUN", "X"]], "sentence 0 has 1 gold tags"),
        (squad_f1, [["a"]], ["a", "b"], "1 gold questions but 2 predictions"),
        (squad_f1, ["Paris"], ["Paris"], "question 0 needs a list"),
        (map_at_20, [{"a"}], [], "1 gold queries but 0 rankings"),
        (map_at_20, [set()], [["a"]], "a query has no gold item"),
        (mewslix_mrr_at_20, [["Q1"]], [], "1 gold mentions but 0 rankings"),
        (tatoeba_accuracy, [0, 1], [0], "2 gold indices but 1 predictions"),
    ],
)
def test_mismatches_are_errors(fn, gold, pred, message):
    with pytest.raises(ValueError, match=message):
        fn(gold, pred)

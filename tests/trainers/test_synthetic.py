"""Synthetic generators of every registered task: well-formed, parallel across languages,
deterministic, not degenerate, and answerable from the concepts they were built from."""

import dataclasses
from collections import Counter

import numpy as np
import pytest

from trainers.heads import get_format
from trainers.synthetic import (
    ANSWER_POOL_CAP,
    ENTITY_TYPES,
    GENERATORS,
    MARK,
    POOLS,
    answer_pool_size,
    synthetic_split,
    task_data,
)
from trainers.tasks import NER_TAGS, TASKS, UPOS, SplitSizes, get_task
from trainers.world import CATEGORIES, TAGS, World, WorldConfig

SYNTHETIC = sorted(name for name, task in TASKS.items() if task.synthetic)
LANGUAGES = ("en", "ov80", "ov50", "sov50", "fake")
SIZES = SplitSizes(40, 24, 24)
POS_OF = {"det": "DET", "adj": "ADJ", "noun": "NOUN", "neg": "PART", "verb": "VERB", "prep": "ADP"}


@pytest.fixture(scope="module")
def world():
    return World(WorldConfig(sentences_per_language=300))


@pytest.fixture(scope="module")
def world_again():
    return World(WorldConfig(sentences_per_language=300))


@pytest.fixture(scope="module")
def english(world):
    """English word -> (lexicon part, concept id): every English word is distinct."""
    return {
        w: (part, i) for part, words in world.lexicons["en"].items() for i, w in enumerate(words)
    }


def nouns(english, text):
    return [english[w][1] for w in text.split() if english.get(w, ("",))[0] == "noun"]


def verb(english, text):
    return next(english[w][1] for w in text.split() if english.get(w, ("",))[0] == "verb")


def test_every_synthetic_task_has_its_generator_and_pools_are_generators():
    assert SYNTHETIC, "no synthetic tasks registered"
    for name in SYNTHETIC:
        assert TASKS[name].synthetic in GENERATORS, name
    assert set(POOLS) <= set(GENERATORS)
    formats = {TASKS[n].synthetic: TASKS[n].format for n in SYNTHETIC}
    assert {g for g, f in formats.items() if f == "dual_encoder"} == set(POOLS)


def shape_problem(task, example, split, pool_ids):
    """What the format's (possibly placeholder) check cannot see yet."""
    fmt = task.format
    if fmt == "qa":
        text, start = example["answers"]["text"][0], example["answers"]["answer_start"][0]
        if not (example["id"] and example["question"].strip() and text.strip()):
            return "empty qa field"
        if example["context"][start : start + len(text)] != text:
            return "answer not at its start"
    elif fmt == "dual_encoder":
        if not example["query"].strip():
            return "empty query"
        if split == "train":
            if set(example) != {"query", "positive"} or not example["positive"].strip():
                return "train pair shape"
        elif set(example) != {"query", "gold"} or not example["gold"]:
            return "eval query shape"
        elif not set(example["gold"]) <= pool_ids:
            return "gold id outside the pool"
    elif fmt == "sentence_retrieval" and not (example["source"].strip() and example["target"]):
        return "empty pair"
    return None


@pytest.mark.parametrize("name", SYNTHETIC)
def test_examples_of_every_split_are_well_formed(world, name):
    task = get_task(name)
    data = task_data(world, task, SIZES, LANGUAGES)
    fmt = get_format(task.format)
    if task.role == "target":
        assert set(data.test) == set(task.evaluates(LANGUAGES))
    else:  # intermediates have no test in task_data: check the generator's test split anyway
        test = {lang: synthetic_split(world, task, "test", lang, 24) for lang in LANGUAGES}
        data = dataclasses.replace(data, test=test)
    assert bool(data.pools) == (task.synthetic in POOLS)
    for split in ("train", "dev", "test"):
        pool_ids = {c["id"] for c in data.pools.get(split, [])}
        if data.pools and split != "train":
            pool = data.pools[split]
            assert len(pool_ids) == len(pool) > 0
            assert all(isinstance(c["text"], str) and c["text"].strip() for c in pool)
        for lang, examples in data.split(split).items():
            assert len(examples) == (getattr(SIZES, split) if split != "test" else 24)
            for example in examples:
                assert fmt.check(task, example) is None, (name, split, lang, example)
                assert shape_problem(task, example, split, pool_ids) is None, (name, example)


def signature(task, example):
    """What must agree across languages: the concepts, labels and gold."""
    if task.format in ("classification", "multiple_choice"):
        return example["label"], len(example.get("choices", ()))
    if task.format == "tagging":
        return tuple(sorted(example["tags"]))  # word order may differ (SOV)
    if task.format == "qa":
        return (
            example["id"],
            example["context"].count(" . "),
            len(example["answers"]["text"][0].split()),
        )
    if task.format == "dual_encoder":
        return tuple(example["gold"])
    return example["target"]


@pytest.mark.parametrize("name", [n for n in SYNTHETIC if TASKS[n].role == "target"])
def test_evaluation_sets_are_parallel_across_languages(world, name):
    task = get_task(name)
    en = synthetic_split(world, task, "test", "en", 40)
    for lang in ("ov80", "sov50", "fake"):
        other = synthetic_split(world, task, "test", lang, 40)
        assert [signature(task, e) for e in en] == [signature(task, e) for e in other], lang
        assert en != other  # another language's words
    if task.format == "tagging":  # same word order: the very same tag sequences
        ov80 = synthetic_split(world, task, "test", "ov80", 40)
        assert [e["tags"] for e in en] == [e["tags"] for e in ov80]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_data_is_deterministic(world, world_again, name):
    task = get_task(name)
    first = task_data(world, task, SIZES, ("en", "ov80"))
    again = task_data(world_again, task, SIZES, ("en", "ov80"))
    assert first == again


@pytest.mark.parametrize("name", ["xcopa", "siqa"])
def test_choice_tasks_are_decided_by_premise_and_question_not_length(world, english, name):
    task = get_task(name)
    k = len(task.labels)
    examples = synthetic_split(world, task, "train", "en", 600)
    prep = world.lexicons["en"]["prep"]
    cat = world.noun_category
    oracle = ignore_question = longest = 0
    for e in examples:
        subj, obj = nouns(english, e["context"])[:2]
        if task.synthetic == "copa":  # "<prep> ?": the first preposition asks about the object
            marker, mark = e["question"].split()
            asked = obj if prep.index(marker) == 0 else subj
            varied = [nouns(english, c)[1] for c in e["choices"]]  # the choices' objects
            guess_without_question = obj
        else:  # "<det> <noun> ?"
            asked = english[e["question"].split()[1]][1]
            mark = e["question"].split()[-1]
            varied = [nouns(english, c)[0] for c in e["choices"]]  # the choices' subjects
            guess_without_question = subj
        assert mark == MARK
        words = [c.split() for c in e["choices"]]
        differ = [i for i, ws in enumerate(zip(*words, strict=True)) if len(set(ws)) > 1]
        assert len(differ) == 1  # the choices differ in the varied noun only
        assert not set(varied) & {subj, obj}  # never a premise noun: no string match
        matches = [j for j, v in enumerate(varied) if cat[v] == cat[asked]]
        assert len(matches) == 1  # exactly one choice shares the asked participant's category
        other = subj if asked == obj else obj
        if cat[other] != cat[asked]:  # the other participant's category is a distractor
            assert cat[other] in {cat[v] for v in varied}
        oracle += matches[0] == e["label"]
        ignore_question += cat[varied[e["label"]]] == cat[guess_without_question]
        longest += int(np.argmax([len(c) for c in e["choices"]])) == e["label"]
    n = len(examples)
    assert oracle == n
    assert abs(longest / n - 1 / k) < 0.1  # length says nothing
    assert ignore_question / n < 0.7  # the question matters: the other participant misleads
    positions = Counter(e["label"] for e in examples)
    assert set(positions) == set(range(k))
    assert min(positions.values()) > n / k / 2


def test_choice_noise_redraws_labels_of_the_same_inputs(world):
    easy = synthetic_split(world, get_task("choice_easy"), "train", "en", 600)
    hard = synthetic_split(world, get_task("choice_hard"), "train", "en", 600)
    assert [(e["context"], e["choices"]) for e in easy] == [
        (e["context"], e["choices"]) for e in hard
    ]
    changed = np.mean([a["label"] != b["label"] for a, b in zip(easy, hard, strict=True)])
    # noise 0.5 redraws half the labels uniformly over 3 positions: 0.5 * 2/3 change
    expected = 0.5 * 2 / 3
    assert abs(changed - expected) < 4 * np.sqrt(expected * (1 - expected) / 600)
    assert synthetic_split(world, get_task("choice_easy"), "test", "en", 50) == (
        synthetic_split(world, get_task("choice_hard"), "test", "en", 50)
    )  # never noise on test


@pytest.mark.parametrize("name", ["udpos", "pos"])
def test_pos_tags_name_each_words_part_of_speech(world, english, name):
    task = get_task(name)
    assert all(t in task.labels for t in TAGS)
    for e in synthetic_split(world, task, "train", "en", 100):
        assert [task.labels[t] for t in e["tags"]] == [POS_OF[english[w][0]] for w in e["words"]]
    if name == "udpos":
        assert task.labels == UPOS


def test_ner_tags_are_valid_iob2_entities_of_noun_categories(world, english):
    task = get_task("panx")
    assert task.labels == NER_TAGS
    examples = synthetic_split(world, task, "train", "en", 500)
    seen = Counter()
    for e in examples:
        names = [task.labels[t] for t in e["tags"]]
        seen.update(names)
        for i, (word, tag) in enumerate(zip(e["words"], names, strict=True)):
            part, concept = english[word]
            if tag.startswith("I-"):  # continues an entity of its type begun right before
                assert names[i - 1] == "B-" + tag[2:]
                assert english[e["words"][i - 1]][0] == "adj" and part == "noun"
            if part == "noun":
                kind = ENTITY_TYPES.get(CATEGORIES[world.noun_category[concept]])
                assert tag == ("O" if kind is None else tag[:2] + kind), (word, tag)
                if kind is not None and tag == "B-" + kind and i > 0:
                    assert names[i - 1] == "O"  # a name-forming adjective would have begun it
            elif part != "adj":
                assert tag == "O"
            elif tag != "O":  # an adjective inside a name begins it
                assert tag.startswith("B-") and names[i + 1] == "I-" + tag[2:]
    assert set(seen) == set(NER_TAGS)  # every entity type, begun and continued
    assert seen["I-PER"] >= 5 and seen["I-LOC"] >= 5 and seen["I-ORG"] >= 5


def test_qa_answers_one_clause_object_unambiguously(world, english):
    task = get_task("xquad")
    examples = synthetic_split(world, task, "test", "en", 200)
    assert len({e["id"] for e in examples}) == len(examples)
    lengths = Counter()
    for e in examples:
        clauses = e["context"].split(" . ")
        lengths[len(clauses)] += 1
        text, start = e["answers"]["text"][0], e["answers"]["answer_start"][0]
        assert e["context"][start : start + len(text)] == text
        heads = [(nouns(english, c)[0], verb(english, c)) for c in clauses]
        assert len(set(heads)) == len(heads)  # distinct (subject, verb): one answer
        asked = e["context"][:start].count(" . ")  # the clause the answer stands in
        assert (nouns(english, e["question"])[0], verb(english, e["question"])) == heads[asked]
        assert e["question"].split().count(MARK) == 1
        # the answer is that clause's object phrase: indefinite determiner ... noun
        words = text.split()
        assert words[0] == world.lexicons["en"]["det"][1]
        assert english[words[-1]] == ("noun", nouns(english, clauses[asked])[1])
    assert set(lengths) == {3, 4, 5, 6}
    for lang in ("fake", "sov50"):
        for e in synthetic_split(world, task, "test", lang, 50):
            text, start = e["answers"]["text"][0], e["answers"]["answer_start"][0]
            assert e["context"][start : start + len(text)] == text


def test_entity_queries_mention_their_gold_entity(world, english):
    task = get_task("mewslix")
    data = task_data(world, task, SIZES, ("en", "ov80"))
    for split in ("dev", "test"):
        pool = data.pools[split]
        assert [c["id"] for c in pool] == [f"Q{i}" for i in range(world.sizes["noun"])]
        for c in pool:  # an English description whose subject is the entity
            assert f"Q{nouns(english, c['text'])[0]}" == c["id"]
    for e in data.test["en"] + data.dev["en"]:
        assert e["gold"] == [f"Q{nouns(english, e['query'])[0]}"]
    descriptions = {c["text"] for c in data.pools["test"]}
    for e in data.train["en"]:
        assert e["positive"] in descriptions
        assert nouns(english, e["positive"])[0] == nouns(english, e["query"])[0]


def test_answer_sentence_pool_is_multilingual_and_gold_is_every_parallel_answer(world, english):
    task = get_task("lareqa")
    languages = ("en", "ov80", "fake")
    data = task_data(world, task, SplitSizes(30, 20, 50), languages)
    for split, n in (("dev", 20), ("test", 50)):
        pool = {c["id"]: c["text"] for c in data.pools[split]}
        k = answer_pool_size(world, n)
        assert k == n and len(pool) == k * len(languages)
        for lang, queries in data.split(split).items():
            for i, q in enumerate(queries):
                assert q["gold"] == [f"{code}/{i % k}" for code in languages], lang
                if lang == "en":  # the English answer is the question with its object filled
                    answer, question = pool[f"en/{i % k}"], q["query"]
                    assert answer.startswith(question.split(MARK)[0])
                    assert nouns(english, question)[0] == nouns(english, answer)[0]
                    assert verb(english, question) == verb(english, answer)
        heads = [
            (nouns(english, pool[f"en/{j}"])[0], verb(english, pool[f"en/{j}"])) for j in range(k)
        ]
        assert len(set(heads)) == k  # each question has one answer concept
    for e in data.train["en"]:
        assert e["positive"].startswith(e["query"].split(MARK)[0])
    assert answer_pool_size(world, 10**6) == ANSWER_POOL_CAP
    english_only = task_data(world, task, SplitSizes(4, 4, 4), ())
    assert all(e["gold"] == [e["gold"][0]] for e in english_only.dev["en"])


def test_parallel_pairs_are_one_clause_in_two_languages(world, english):
    task = get_task("tatoeba")
    assert "en" not in task.evaluates(LANGUAGES)
    en = synthetic_split(world, task, "test", "en", 30)
    assert all(e["source"] == e["target"] for e in en)
    for lang in ("ov50", "sov50", "fake"):
        pairs = synthetic_split(world, task, "test", lang, 30)
        assert [e["target"] for e in pairs] == [e["source"] for e in en]
        assert all(len(e["source"].split()) == len(e["target"].split()) for e in pairs)
        assert all(w in english for e in pairs for w in e["target"].split())

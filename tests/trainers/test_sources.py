"""Real-data loading (trainers/sources.py) against hand-written copies of each hub schema.

tests/fixtures/hub/<source>/<role>[.<lang>].jsonl mirror the real datasets' rows (a few per
language); `fixture_overrides` points every sources.yaml entry at them the way a user points one
at local files (`data.sources.<name>: {path: json, data_files: ...}`). Expected values below are
read off those files by hand. Nothing here reaches a hub: conftest sets HF_HUB_OFFLINE.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainers.converters import CONVERTERS, sentence_spans
from trainers.heads import get_format
from trainers.source_config import SourceOverride
from trainers.sources import (
    DataUnavailable,
    Source,
    check_available,
    load_task_data,
    source_entries,
)
from trainers.tasks import NER_TAGS, NLI_LABELS, TASKS, UPOS, XTREME_R_LANGUAGES, get_task

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
SOURCED = sorted(name for name, task in TASKS.items() if task.source)

# Languages whose fixture rows share one test file (as the source ships them); every other
# target's are read off its test.<lang>.jsonl files, so a new target needs no entry here
IN_ONE_FILE = {"tydiqa": ("en", "ar", "bn"), "mewslix": ("de", "ja", "en")}


def requested(name: str) -> tuple[str, ...]:
    """What a test asks of a target: the languages its fixtures hold, plus the first XTREME-R
    language the task lacks (skipped, not an error)."""
    task = TASKS[name]
    held = IN_ONE_FILE.get(name) or tuple(
        sorted(f.name.split(".")[1] for f in (FIXTURES / name).glob("test.*.jsonl"))
    )
    lacking = next(lang for lang in XTREME_R_LANGUAGES if lang not in task.languages)
    return (*held, lacking)


REQUESTED = {name: requested(name) for name in SOURCED if TASKS[name].role == "target"}


def fixture_override(directory: Path) -> dict:
    """{path: json, data_files: {role: file}} from the <role>[.<lang>].jsonl files of a folder;
    a per-language file becomes a {lang} template."""
    files = {}
    for file in sorted(directory.glob("*.jsonl")):
        role, _, rest = file.name.partition(".")
        files[role] = str(file) if rest == "jsonl" else str(directory / f"{role}.{{lang}}.jsonl")
    return {"path": "json", "data_files": files}


def fixture_overrides(cache_dir: Path) -> dict:
    """data.sources for every fixture folder (a folder of folders: one per part, as ANLI+)."""
    overrides = {}
    for folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        parts = sorted(p for p in folder.iterdir() if p.is_dir())
        entry = (
            {"parts": {p.name: fixture_override(p) for p in parts}}
            if parts
            else fixture_override(folder)
        )
        overrides[folder.name] = {**entry, "cache_dir": str(cache_dir)}
    return overrides


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf-datasets")


@pytest.fixture(scope="session")
def overrides(cache_dir: Path) -> dict:
    return fixture_overrides(cache_dir)


@pytest.fixture(scope="session")
def loaded(overrides: dict):
    """(task, data) per task name, loaded once with the fixture overrides."""
    cache: dict[str, tuple] = {}

    def load(name: str) -> tuple:
        if name not in cache:
            task = get_task(name)
            cache[name] = load_task_data(task, REQUESTED.get(name, ("de",)), None, 0, overrides)
        return cache[name]

    return load


def key(example: dict) -> str:
    return json.dumps(example, sort_keys=True, ensure_ascii=False)


# ---- the registry, the YAML and the fixtures agree -----------------------------------------


def test_every_task_source_has_an_entry_and_every_entry_a_fixture():
    entries = source_entries()
    assert {TASKS[name].source for name in SOURCED} == set(entries)
    assert {p.name for p in FIXTURES.iterdir() if p.is_dir()} == set(entries)
    for name, entry in entries.items():
        SourceOverride.model_validate(entry)  # the YAML uses only keys the loader reads
        for part in entry.get("parts", {}):
            assert (FIXTURES / name / part).is_dir(), f"{name}: no fixture for part {part}"


@pytest.mark.parametrize("name", SOURCED)
def test_every_entry_resolves_to_known_converters(name):
    task = get_task(name)
    source = Source(task)
    langs = task.languages or ("en",)
    specs = [s for role in ("train", "dev", "test") for s in source.specs(role, langs[0])]
    assert specs, name
    assert all(spec.converter in CONVERTERS for spec in specs)


def test_templates_fill_language_names_codes_and_id_prefixes():
    def spec(name, role, lang):
        return Source(get_task(name)).specs(role, lang)[0]

    assert spec("udpos", "test", "af").name == "udpos.Afrikaans"
    assert spec("udpos", "train", "en").name == "udpos.English"
    assert spec("tatoeba", "test", "ar").name == "tatoeba.ara"
    assert spec("mlqa", "test", "hi").name == "MLQA.hi.hi"
    assert spec("tydiqa", "test", "bn").prefix == (("id", "Bengali-"),)
    assert spec("xnli", "train", "en").path == "nyu-mll/multi_nli"
    assert (spec("xquad", "test", "ro").path, spec("xquad", "test", "ro").name) == (
        "google/xquad",
        "xquad.ro",
    )
    assert spec("panx", "test", "az").path == "unimelb-nlp/wikiann"


def test_a_user_path_replaces_the_whole_location():
    user = {"xnli": {"path": "json", "data_files": {"test": "/d/test.{lang}.jsonl"}}}
    spec = Source(get_task("xnli"), user).specs("test", "ar")[0]
    assert (spec.path, spec.name, spec.revision, spec.data_files) == (
        "json",
        None,
        None,
        "/d/test.ar.jsonl",
    )
    assert spec.split == "test" and spec.converter == "nli"  # the rest of the entry stays


def test_a_mistyped_override_key_is_one_line():
    with pytest.raises(ValueError, match=r"^data.sources.xnli.test: unknown key 'splt'; did you"):
        Source(get_task("xnli"), {"xnli": {"test": {"splt": "test"}}})


def test_sentence_spans():
    text = "The Moon orbits Earth. It takes a month! Why? 月は回る。速い。"
    spans = [text[s:e] for s, e in sentence_spans(text)]
    assert spans == ["The Moon orbits Earth.", "It takes a month!", "Why?", "月は回る。", "速い。"]


# ---- every task: layout and example shapes -----------------------------------------------


def shape_problem(task, example: dict) -> str | None:
    fmt = task.format
    if fmt == "classification":
        ok = set(example) <= {"text", "text_pair", "label"} and isinstance(example["label"], int)
    elif fmt == "multiple_choice":
        ok = set(example) == {"context", "question", "choices", "label"}
        ok = ok and len(example["choices"]) == len(task.labels)
    elif fmt == "tagging":
        ok = set(example) == {"words", "tags"} and len(example["words"]) == len(example["tags"])
        ok = ok and all(0 <= t < len(task.labels) for t in example["tags"])
    elif fmt == "qa":
        ok = set(example) == {"id", "context", "question", "answers"}
        answers = example["answers"]
        spans = zip(answers["text"], answers["answer_start"], strict=False)
        ok = ok and len(answers["text"]) == len(answers["answer_start"])
        ok = ok and all(example["context"][s : s + len(t)] == t for t, s in spans)  # true spans
    elif fmt == "dual_encoder":
        ok = set(example) in ({"query", "positive"}, {"query", "gold"})
    else:
        ok = set(example) == {"source", "target"}
    return None if ok else f"{task.name}: bad {fmt} example {example}"


@pytest.mark.parametrize("name", SOURCED)
def test_layout_and_shapes(name, loaded):
    task, data = loaded(name)
    assert data.train.keys() == {"en"} and data.dev.keys() == {"en"}  # English only
    if task.format != "sentence_retrieval":
        assert data.train["en"] and data.dev["en"]
    expected = [lang for lang in REQUESTED.get(name, ()) if lang in task.languages]
    assert list(data.test) == (expected if task.role == "target" else [])
    fmt = get_format(task.format)
    for split in ("train", "dev", "test"):
        for examples in data.split(split).values():
            for example in examples:
                assert shape_problem(task, example) is None
                assert fmt.check(task, example) is None, (name, example)
    if task.format == "dual_encoder":
        assert set(data.pools) == {"dev", "test"}
        for split in ("dev", "test"):
            ids = {item["id"] for item in data.pools[split]}
            assert all(set(item) == {"id", "text"} for item in data.pools[split])
            for examples in data.split(split).values():
                assert all(set(e["gold"]) <= ids for e in examples if "gold" in e)
    else:
        assert not data.pools


# ---- hand-known values ---------------------------------------------------------------------


def test_xnli(loaded):
    _, data = loaded("xnli")
    assert len(data.train["en"]) == 5  # six MNLI rows, one with label -1
    assert data.test["ar"][0]["label"] == NLI_LABELS.index("contradiction")  # ClassLabel 2
    de = data.test["de"][0]  # google/xtreme XNLI schema: sentence1/2 and a string label
    assert de == {
        "text": "Der Hund schläft im Garten.",
        "text_pair": "Der Hund ist braun.",
        "label": NLI_LABELS.index("neutral"),
    }


def test_xcopa(loaded):
    _, data = loaded("xcopa")
    assert data.train["en"][0] == {
        "context": "The man broke his toe.",
        "question": "What was the cause?",
        "choices": ["He dropped a hammer on his foot.", "He got a hole in his sock."],
        "label": 0,
    }
    girl = data.test["et"][1]
    assert (girl["question"], girl["label"]) == ("What happened as a result?", 1)


def test_udpos_ints_strings_and_multiword_tokens(loaded):
    _, data = loaded("udpos")
    the_cat = ("DET", "NOUN", "VERB", "PUNCT")
    assert data.train["en"][0]["tags"] == [UPOS.index(t) for t in the_cat]
    assert data.test["de"][0]["tags"] == [5, 7, 15, 12]  # strings mapped by name
    assert data.test["de"][1] == {  # "zum" (tag "_") is the multiword line of "zu dem"
        "words": ["Wir", "gehen", "zu", "dem", "Haus"],
        "tags": [UPOS.index(t) for t in ("PRON", "VERB", "ADP", "DET", "NOUN")],
    }


def test_panx(loaded):
    _, data = loaded("panx")
    assert data.train["en"][0]["tags"] == [1, 2, 0, 5, 0]  # Angela Merkel visited Paris .
    assert data.test["sw"][0]["tags"] == [1, 2, 0, 5, 0]  # string tags, same ids
    org = ["B-ORG", "I-ORG", "I-ORG", "I-ORG"]
    assert data.test["sw"][1]["tags"] == [NER_TAGS.index(t) for t in org]


def test_qa_answers(loaded):
    _, mlqa = loaded("mlqa")
    assert mlqa.test["hi"][0]["answers"] == {"text": ["आगरा"], "answer_start": [7]}
    assert mlqa.test["de"][0]["answers"]["answer_start"] == [39]  # "in die Nordsee"
    _, xquad = loaded("xquad")
    multi = xquad.dev["en"][0]  # SQuAD dev: three annotators
    assert multi["answers"] == {
        "text": ["Denver Broncos", "the Denver Broncos", "Denver Broncos"],
        "answer_start": [29, 25, 29],
    }
    assert xquad.test["ro"][0]["id"] == xquad.test["es"][0]["id"]  # parallel ids
    _, v2 = loaded("squad_v2")
    assert v2.train["en"][1]["answers"] == {"text": [], "answer_start": []}  # unanswerable
    assert v2.dev["en"][1]["answers"] == {"text": [], "answer_start": []}


def test_tydiqa_languages_come_from_the_id_prefix(loaded):
    _, data = loaded("tydiqa")
    assert [e["id"] for e in data.train["en"]] == [
        "english-1000-1",
        "english-1001-1",
        "english-1002-1",
    ]
    assert [e["id"] for e in data.dev["en"]] == ["english-3000-1"]
    assert {lang: [e["id"] for e in ex] for lang, ex in data.test.items()} == {
        "en": ["english-3000-1"],
        "ar": ["arabic-3001-1"],
        "bn": ["bengali-3002-1"],
    }


def test_mewslix(loaded):
    _, data = loaded("mewslix")
    assert data.train["en"][0] == {
        "query": "The capital of France is [Paris].",
        "positive": "Paris is the capital and largest city of France.",
    }
    assert data.test["de"] == [
        {"query": "Die Kanzlerin reiste nach [Paris].", "gold": ["Q90"]},
        {"query": "Die [Kanzlerin] reiste nach Paris.", "gold": ["Q4970706"]},
    ]
    assert data.test["ja"] == [{"query": "[東京]で会議が開かれた。", "gold": ["Q1490"]}]
    assert [p["id"] for p in data.pools["dev"]] == ["Q8355", "Q1490"]
    assert len(data.pools["test"]) == 5  # the candidate set, not the queries' golds


def test_lareqa_gold_spans_every_loaded_language(loaded):
    _, data = loaded("lareqa")
    assert data.train["en"][0] == {
        "query": "When was the Eiffel Tower finished?",
        "positive": "It was finished in 1889.",
    }
    texts = {p["id"]: p["text"] for p in data.pools["test"]}
    assert len(texts) == 4  # two sentences per language; the two questions share a context
    moon = data.test["de"][0]
    assert sorted(texts[i] for i in moon["gold"]) == [
        "Der Mond kreist um die Erde.",
        "Η Σελήνη περιφέρεται γύρω από τη Γη.",
    ]
    assert data.test["el"][0]["gold"] == moon["gold"]


def test_tatoeba(loaded):
    _, data = loaded("tatoeba")
    assert data.train == {"en": []} and data.dev == {"en": []}
    assert data.test["ar"][1] == {"source": "أين المحطة؟", "target": "Where is the station?"}


def test_multiple_choice_and_boolean_labels(loaded):
    assert loaded("hellaswag")[1].train["en"][0]["label"] == 3  # "3"
    assert loaded("siqa")[1].train["en"][0]["label"] == 2  # "3": the third answer
    assert loaded("commonsenseqa")[1].train["en"][1]["label"] == 1  # answerKey "B"
    assert loaded("cosmosqa")[1].dev["en"][0]["label"] == 2
    assert [e["label"] for e in loaded("boolq")[1].train["en"]] == [1, 0, 0]
    assert [e["label"] for e in loaded("rte")[1].train["en"]] == [0, 1, 0, 1]


def test_anli_plus_concatenates_parts_and_drops_unlabelled(loaded):
    _, data = loaded("anli_plus")
    assert len(data.train["en"]) == 3 * 3 + 2 + 2  # ANLI R1-R3, MNLI, SNLI less one -1
    assert len(data.dev["en"]) == 3 + 1 + 1  # SNLI dev less one -1


def test_ccg_labels_are_the_sorted_training_supertags(loaded):
    task, data = loaded("ccg")
    assert get_task("ccg").labels == ()
    assert task.labels == tuple(sorted({t for r in _rows("ccg/train.jsonl") for t in r["tags"]}))
    assert len(task.labels) == 9
    # dev is jiant's string format; its second sentence has a supertag unseen in training
    assert len(data.dev["en"]) == 1
    dev_tags = [task.labels[t] for t in data.dev["en"][0]["tags"]]
    assert dev_tags == ["N", "(S[dcl]\\NP)/NP", "N", "."]


def _rows(rel: str) -> list[dict]:
    with (FIXTURES / rel).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_classlabel_ids_are_mapped_by_name(tmp_path, cache_dir):
    """Parquet written by datasets keeps ClassLabel features: ids are read through their names,
    whatever order the dataset declares (here not the task's)."""
    from datasets import ClassLabel, Dataset, Features, List, Value

    names = ["contradiction", "entailment", "neutral"]
    text = Value("string")
    nli = Features({"premise": text, "hypothesis": text, "label": ClassLabel(names=names)})
    rows = {"premise": ["A cat sleeps."], "hypothesis": ["No cat sleeps."], "label": [0]}
    ud_order = ["NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ",
                "PROPN", "PRON", "X", "_", "ADV", "INTJ", "VERB", "AUX"]  # fmt: skip
    pos = Features({"tokens": List(Value("string")), "pos_tags": List(ClassLabel(names=ud_order))})
    tags = {"tokens": [["Cats", "."]], "pos_tags": [[0, 1]]}
    overrides = {}
    for source, features, columns in (("xnli", nli, rows), ("udpos", pos, tags)):
        files = {}
        for role in ("train", "dev", "test"):
            path = tmp_path / f"{source}-{role}.parquet"
            Dataset.from_dict(columns, features=features).to_parquet(str(path))
            files[role] = str(path)
        overrides[source] = {"path": "parquet", "data_files": files, "cache_dir": str(cache_dir)}
    _, xnli = load_task_data(get_task("xnli"), ["ar"], None, 0, overrides)
    assert xnli.test["ar"][0]["label"] == NLI_LABELS.index("contradiction")
    _, udpos = load_task_data(get_task("udpos"), ["af"], None, 0, overrides)
    assert udpos.test["af"][0]["tags"] == [UPOS.index("NOUN"), UPOS.index("PUNCT")]


# ---- size matching and caps ----------------------------------------------------------------


def test_size_matching_draws_exactly_n_distinct_examples(overrides, loaded):
    anli = get_task("anli_plus")
    full = {key(e) for e in loaded("anli_plus")[1].train["en"]}
    draws = []
    for seed in range(4):
        _, data = load_task_data(anli, (), 6, seed, overrides)
        sample = [key(e) for e in data.train["en"]]
        assert len(sample) == len(set(sample)) == 6 and set(sample) <= full
        draws.append(tuple(sample))
    _, again = load_task_data(anli, (), 6, 0, overrides)
    assert tuple(key(e) for e in again.train["en"]) == draws[0]  # deterministic by seed
    assert len(set(draws)) > 1  # and the seed matters
    sizes = [len(load_task_data(get_task(n), (), 4, 1, overrides)[1].train["en"])
             for n in ("mnli", "rte")]  # fmt: skip
    assert sizes == [4, 4]  # the same N for two tasks


def test_asking_for_more_training_examples_than_exist_is_one_line(overrides):
    with pytest.raises(ValueError, match=r"task 'rte': train_size=10 .* only 4 ") as err:
        load_task_data(get_task("rte"), (), 10, 0, overrides)
    assert "\n" not in str(err.value)


def test_dev_and_test_caps_keep_the_first_n(overrides, loaded):
    _, full = loaded("xnli")
    _, capped = load_task_data(get_task("xnli"), ["ar", "de"], None, 0, overrides, 2, 1)
    assert capped.dev["en"] == full.dev["en"][:2]
    assert {lang: len(ex) for lang, ex in capped.test.items()} == {"ar": 1, "de": 1}
    assert capped.train["en"] == full.train["en"]


# ---- unreachable data ----------------------------------------------------------------------


def test_a_missing_file_names_task_source_language_and_the_fix(overrides, tmp_path):
    broken = {**overrides, "xnli": {**overrides["xnli"]}}
    broken["xnli"]["data_files"] = {
        **overrides["xnli"]["data_files"],
        "test": str(tmp_path / "gone.{lang}.jsonl"),
    }
    with pytest.raises(DataUnavailable) as err:
        load_task_data(get_task("xnli"), ["ar"], None, 0, broken)
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, ValueError)
    for part in ("'xnli'", "lang ar", "gone.ar.jsonl", "data.sources.xnli", "docs/data.md"):
        assert part in message


def test_an_offline_hub_id_is_unavailable(cache_dir):
    with pytest.raises(DataUnavailable) as err:
        load_task_data(get_task("xnli"), ["ar"], None, 0, {"xnli": {"cache_dir": str(cache_dir)}})
    message = str(err.value)
    assert "\n" not in message
    for part in ("task 'xnli'", "lang en", "nyu-mll/multi_nli", "data.sources.xnli"):
        assert part in message


def test_local_only_sources_say_so(cache_dir):
    with pytest.raises(DataUnavailable, match=r"local files are required.*data\.sources\.mewslix"):
        load_task_data(get_task("mewslix"), ["de"], None, 0, {})
    snli = {"path": "json", "data_files": {}}
    parts = {"anli_plus": {"cache_dir": str(cache_dir), "parts": {"snli": snli}}}
    with pytest.raises(DataUnavailable, match=r"data\.sources\.anli_plus"):
        check_available(["anli_plus"], [], parts)


def test_check_available(overrides, tmp_path):
    assert check_available(["xnli", "xcopa", "lareqa"], ["et", "de"], overrides) is None
    broken = {**overrides, "siqa": {**overrides["siqa"], "data_files": {"train": "/nope.jsonl"}}}
    # XCOPA trains on SIQA first: its data is checked too
    problem = check_available(["xcopa"], ["et"], broken, raise_error=False)
    assert isinstance(problem, DataUnavailable) and "'siqa'" in str(problem)
    files = {**overrides["xcopa"]["data_files"], "test": str(tmp_path / "x.{lang}.jsonl")}
    gone = {"xcopa": {**overrides["xcopa"], "data_files": files}}
    with pytest.raises(DataUnavailable, match="lang et"):
        check_available(["xcopa"], ["et", "ht"], gone)

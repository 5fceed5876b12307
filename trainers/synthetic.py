"""Synthetic versions of every task format in the built-in world (`trainers.world`).

A task names its generator in `Task.synthetic`; the generator builds `n` examples of one split in
one language, shaped by the task's knobs (`noise`), never by the task's name. Concepts depend on
(world seed, generator, split) only, so evaluation sets are parallel across languages, like
XNLI's; the trial seed never changes data, only initialization and order.

Every example is built from the world's concepts and lexicons only. Where a question needs a
marker that no lexicon has, the shared non-lexical token "?" stands in for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import numpy as np

from trainers.tasks import Example, SplitSizes, Task, TaskData
from trainers.world import CATEGORIES, TAGS, Clause, World, _stable_int

MARK = "?"  # the one non-lexical token: a question's marker or the slot it asks for


class SplitGenerator(Protocol):
    """(world, task, rng, lang, n) -> n examples; rng is seeded by (world seed, generator, split)
    and is the same for every language, so every draw must be independent of `lang`. `split`
    matters only where train and evaluation examples differ in shape (retrieval, QA ids)."""

    def __call__(
        self,
        world: World,
        task: Task,
        rng: np.random.Generator,
        lang: str,
        n: int,
        *,
        split: str = "test",
    ) -> list[Example]: ...


ClauseGenerator = Callable[[World, Task, Clause, np.random.Generator, str], Example]


def per_clause(make: ClauseGenerator) -> SplitGenerator:
    """A split generator from one that turns a single sampled clause into one example."""

    def generate(
        world: World,
        task: Task,
        rng: np.random.Generator,
        lang: str,
        n: int,
        *,
        split: str = "test",
    ) -> list[Example]:
        return [make(world, task, world.sample_clause(rng), rng, lang) for _ in range(n)]

    return generate


# ---- helpers over concepts ----


def _text(world: World, clause: Clause, lang: str) -> str:
    return " ".join(w for w, _ in world.realize(clause, lang))


def _category(world: World, noun: int) -> int:
    return int(world.noun_category[noun])


def _noun_of(
    world: World, rng: np.random.Generator, category: int, avoid: tuple[int, ...] = ()
) -> int:
    """A noun of `category` other than those in `avoid`: one draw, whatever the language."""
    per = world.config.nouns_per_category
    nouns = [category * per + k for k in range(per) if category * per + k not in avoid]
    return nouns[int(rng.integers(len(nouns)))]


def _other_category(rng: np.random.Generator, avoid: set[int]) -> int:
    options = [c for c in range(len(CATEGORIES)) if c not in avoid]
    return options[int(rng.integers(len(options)))]


def _object_span(tagged: list[tuple[str, str]]) -> tuple[int, int]:
    """Word span [start, end) of the object noun phrase: it starts at the second determiner (the
    subject's phrase comes first and a prepositional phrase after the object, in SVO and SOV)."""
    dets = [i for i, (_, t) in enumerate(tagged) if t == "DET"]
    start = dets[1]
    end = next(i for i in range(start, len(tagged)) if tagged[i][1] == "NOUN") + 1
    return start, end


def _question(world: World, clause: Clause, lang: str) -> str:
    """The clause's subject, negation and verb with its object phrase replaced by "?" (no
    object adjective, no prepositional phrase): asks for the object."""
    core = replace(clause, obj_adj=None, prep=None, pobj=None)
    tagged = world.realize(core, lang)
    start, end = _object_span(tagged)
    words = [w for w, _ in tagged]
    return " ".join([*words[:start], MARK, *words[end:]])


def _distinct_heads(
    world: World, rng: np.random.Generator, k: int, **sample: float
) -> list[Clause]:
    """`k` sampled clauses with pairwise distinct (subject, verb): a question naming a subject and
    a verb then has exactly one answer among them. Rejections depend on concepts only."""
    clauses: list[Clause] = []
    seen: set[tuple[int, int]] = set()
    while len(clauses) < k:
        clause = world.sample_clause(rng, **sample)
        if (clause.subj, clause.verb) not in seen:
            seen.add((clause.subj, clause.verb))
            clauses.append(clause)
    return clauses


# ---- classification and tagging ----


def _topic(
    world: World, task: Task, clause: Clause, rng: np.random.Generator, lang: str
) -> Example:
    words = [w for w, _ in world.realize(clause, lang)]
    return {"text": " ".join(words), "label": int(world.noun_category[clause.subj])}


def _nli(world: World, task: Task, clause: Clause, rng: np.random.Generator, lang: str) -> Example:
    """Premise: the clause. Hypothesis: the clause without modifiers (entailment), with negation
    flipped (contradiction) or with another object (neutral)."""
    label = int(rng.integers(3))
    core = Clause(subj=clause.subj, verb=clause.verb, obj=clause.obj, negated=clause.negated)
    if label == 1:
        other = int(rng.integers(world.sizes["noun"] - 1))
        core = Clause(core.subj, core.verb, other + (other >= core.obj), negated=core.negated)
    elif label == 2:
        core = Clause(core.subj, core.verb, core.obj, negated=not core.negated)
    premise = " ".join(w for w, _ in world.realize(clause, lang))
    hypothesis = " ".join(w for w, _ in world.realize(core, lang))
    return {"text": premise, "text_pair": hypothesis, "label": label}


def _pos(world: World, task: Task, clause: Clause, rng: np.random.Generator, lang: str) -> Example:
    words, tags = zip(*world.realize(clause, lang), strict=True)
    return {"words": list(words), "tags": [TAGS.index(t) for t in tags]}


def _upos(world: World, task: Task, clause: Clause, rng: np.random.Generator, lang: str) -> Example:
    """Like `_pos`, with the world's tags looked up by name in the task's tag set (UPOS)."""
    words, tags = zip(*world.realize(clause, lang), strict=True)
    return {"words": list(words), "tags": [task.labels.index(t) for t in tags]}


# entity type of each noun category; the others are no entity
ENTITY_TYPES = {"person": "PER", "place": "LOC", "vehicle": "ORG", "tool": "ORG"}


def name_forming(adj: int) -> bool:
    """Adjectives that join an entity noun into a multi-word name ("New York"): every other one,
    so the rule is a property of the word, learnable from the words alone."""
    return adj % 2 == 0


def _ner(world: World, task: Task, clause: Clause, rng: np.random.Generator, lang: str) -> Example:
    """IOB2 entities: nouns of entity categories are B-X; a name-forming adjective right before
    one starts the entity (B-X) and the noun continues it (I-X). Everything else is O."""
    tagged = world.realize(clause, lang)
    words = [w for w, _ in tagged]
    names = ["O"] * len(tagged)
    # nouns appear as subject, object, prepositional object in every word order
    heads = iter(
        [(clause.subj, clause.subj_adj), (clause.obj, clause.obj_adj), (clause.pobj, None)]
    )
    for i, (_, tag) in enumerate(tagged):
        if tag != "NOUN":
            continue
        noun, adj = next(heads)
        kind = ENTITY_TYPES.get(CATEGORIES[_category(world, noun)])  # type: ignore[arg-type]
        if kind is None:
            continue
        if adj is not None and name_forming(adj) and i > 0 and tagged[i - 1][1] == "ADJ":
            names[i - 1], names[i] = f"B-{kind}", f"I-{kind}"
        else:
            names[i] = f"B-{kind}"
    return {"words": words, "tags": [task.labels.index(t) for t in names]}


# ---- multiple choice ----


def _choice(
    world: World,
    task: Task,
    rng: np.random.Generator,
    lang: str,
    n: int,
    *,
    slot: str,
    object_draw: int,
    question: Callable[[dict, int, int], str],
) -> list[Example]:
    """One choice per task label. A premise clause; a draw picks which of its participants the
    question is about (the object when it equals `object_draw`, else the subject). The choices
    are one new clause differing only in `slot` ("obj" or "subj"): the correct one's noun shares
    the asked participant's category, one distractor has the other participant's category
    (another one where both coincide), the rest other categories. No choice repeats a premise
    noun, so the answer needs the nouns' categories and the question, not string match or length.
    `question(lexicon, draw, asked noun)` words the question."""
    examples = []
    k = len(task.labels)
    for _ in range(n):
        premise = world.sample_clause(rng)
        draw = int(rng.integers(2))
        about_object = draw == object_draw
        asked, other = (premise.obj, premise.subj) if about_object else (premise.subj, premise.obj)
        base = world.sample_clause(rng)
        categories = _choice_categories(world, rng, asked, other, k)
        avoid = (premise.subj, premise.obj)
        nouns = [_noun_of(world, rng, c, avoid) for c in categories]
        label = int(rng.integers(k))
        order = _place_correct(rng, label, k)
        choices = [_text(world, replace(base, **{slot: nouns[j]}), lang) for j in order]
        examples.append(
            {
                "context": _text(world, premise, lang),
                "question": question(world.lexicons[lang], draw, asked),
                "choices": choices,
                "label": label,
            }
        )
    return examples


def _copa(
    world: World, task: Task, rng: np.random.Generator, lang: str, n: int, *, split: str = "test"
) -> list[Example]:
    """XCOPA-like (2 choices differing in their object). The question is a relation marker: the
    first or second preposition of the language, then "?" (about the object, or the subject)."""
    return _choice(
        world, task, rng, lang, n,
        slot="obj",
        object_draw=0,
        question=lambda lex, draw, asked: f"{lex['prep'][draw]} {MARK}",
    )  # fmt: skip


def _social(
    world: World, task: Task, rng: np.random.Generator, lang: str, n: int, *, split: str = "test"
) -> list[Example]:
    """SIQA-like (3 choices differing in their subject). The question names the asked
    participant ("the <noun> ?": what does it do next?)."""
    return _choice(
        world, task, rng, lang, n,
        slot="subj",
        object_draw=1,
        question=lambda lex, draw, asked: f"{lex['det'][0]} {lex['noun'][asked]} {MARK}",
    )  # fmt: skip


def _choice_categories(
    world: World, rng: np.random.Generator, asked: int, other: int, k: int
) -> list[int]:
    """k distinct categories: the asked noun's (the answer), the other participant's when it
    differs (a distractor that only the question rules out), then random others. Always the same
    number of draws."""
    categories = [_category(world, asked)]
    second = _category(world, other)
    fallback = _other_category(rng, {categories[0]})
    categories.append(second if second != categories[0] else fallback)
    while len(categories) < k:
        categories.append(_other_category(rng, set(categories)))
    return categories


def _place_correct(rng: np.random.Generator, label: int, k: int) -> list[int]:
    """Choice order: position `label` holds candidate 0 (the answer), the distractors 1..k-1 fill
    the other positions in a random order."""
    distractors = [int(j) + 1 for j in rng.permutation(k - 1)]
    return [*distractors[:label], 0, *distractors[label:]]


# ---- extractive QA ----

QA_CLAUSES = (3, 6)  # clauses per context, inclusive
QA_SAMPLING = {"p_adj": 0.3, "p_pp": 0.2}  # a little shorter than the corpus: contexts fit more


def _qa(
    world: World, task: Task, rng: np.random.Generator, lang: str, n: int, *, split: str = "test"
) -> list[Example]:
    """A context of 3-6 clauses joined by " . " with pairwise distinct (subject, verb); the
    question is one clause's subject, negation and verb with "?" for its object; the answer is
    that clause's object noun phrase (determiner included) where it stands in the context."""
    examples = []
    for i in range(n):
        m = int(rng.integers(QA_CLAUSES[0], QA_CLAUSES[1] + 1))
        clauses = _distinct_heads(world, rng, m, **QA_SAMPLING)
        asked = int(rng.integers(m))
        parts, offset, answer, start = [], 0, "", -1
        for j, clause in enumerate(clauses):
            tagged = world.realize(clause, lang)
            words = [w for w, _ in tagged]
            if j == asked:
                a, b = _object_span(tagged)
                before = " ".join(words[:a])
                answer = " ".join(words[a:b])
                start = offset + len(before) + (1 if before else 0)
            text = " ".join(words)
            parts.append(text)
            offset += len(text) + len(" . ")
        examples.append(
            {
                "id": f"{split}-{i}",
                "context": " . ".join(parts),
                "question": _question(world, clauses[asked], lang),
                "answers": {"text": [answer], "answer_start": [start]},
            }
        )
    return examples


# ---- retrieval ----


def _description(world: World, noun: int) -> Clause:
    """The English "description" of a noun entity: one fixed clause about it, a function of the
    world seed and the noun only."""
    rng = np.random.default_rng([world.config.seed, _stable_int("entity"), noun])
    clause = world.sample_clause(rng, p_adj=1.0, p_pp=1.0)
    return replace(clause, subj=noun, negated=False)


def _entity(
    world: World, task: Task, rng: np.random.Generator, lang: str, n: int, *, split: str = "test"
) -> list[Example]:
    """Mewsli-X-like: a sentence in `lang` whose subject is the entity; the candidates are one
    English description per noun (`_entity_pool`). Train: {"query", "positive"}; dev and test:
    {"query", "gold": [entity id]}."""
    examples = []
    for _ in range(n):
        clause = world.sample_clause(rng)
        query = _text(world, clause, lang)
        if split == "train":
            examples.append(
                {"query": query, "positive": _text(world, _description(world, clause.subj), "en")}
            )
        else:
            examples.append({"query": query, "gold": [f"Q{clause.subj}"]})
    return examples


def _entity_pool(
    world: World, task: Task, split: str, languages: tuple[str, ...], n: int | None = None
) -> list[dict]:
    """Every noun entity with its English description, the same for every split."""
    return [
        {"id": f"Q{noun}", "text": _text(world, _description(world, noun), "en")}
        for noun in range(world.sizes["noun"])
    ]


# answer sentences per language in a LAReQA pool: the split's queries' distinct concepts, capped
# (XQuAD-R has about 1,190 per language); the pool holds this many times the pool languages
ANSWER_POOL_CAP = 500


def answer_pool_size(world: World, n: int | None) -> int:
    """Distinct answer sentences (concepts) of a split of `n` queries: n, capped by
    `ANSWER_POOL_CAP` and by half the (subject, verb) pairs so distinct heads stay easy to draw."""
    pairs = world.sizes["noun"] * world.sizes["verb"]
    return max(1, min(ANSWER_POOL_CAP if n is None else n, ANSWER_POOL_CAP, pairs // 2))


def _answer_sentence(
    world: World, task: Task, rng: np.random.Generator, lang: str, n: int, *, split: str = "test"
) -> list[Example]:
    """LAReQA-like. Train: an English question (a clause with "?" for its object) and its
    English answer sentence (the clause). Dev and test: query i asks about answer sentence
    k = i mod K of the split's K distinct concepts (`answer_pool_size`); its gold is sentence k
    in every world language (`task_data` keeps those in the pool), like XQuAD-R's parallel
    answers."""
    if split == "train":
        clauses = [world.sample_clause(rng) for _ in range(n)]
        return [
            {"query": _question(world, c, lang), "positive": _text(world, c, "en")} for c in clauses
        ]
    answers = _distinct_heads(world, rng, answer_pool_size(world, n))
    examples = []
    for i in range(n):
        k = i % len(answers)
        examples.append(
            {
                "query": _question(world, answers[k], lang),
                "gold": [f"{code}/{k}" for code in world.languages],
            }
        )
    return examples


def _answer_pool(
    world: World, task: Task, split: str, languages: tuple[str, ...], n: int | None = None
) -> list[dict]:
    """The split's answer sentences in every language of `languages` (English alone when none
    is given), ids "<lang>/<k>". `n` is the split's query count, as `task_data` passes it."""
    answers = _distinct_heads(world, _split_rng(world, task, split), answer_pool_size(world, n))
    codes = [code for code in world.languages if code in languages] or ["en"]
    return [
        {"id": f"{code}/{k}", "text": _text(world, clause, code)}
        for code in codes
        for k, clause in enumerate(answers)
    ]


def _parallel(
    world: World, task: Task, clause: Clause, rng: np.random.Generator, lang: str
) -> Example:
    """Tatoeba-like: the clause in `lang` and in English."""
    return {"source": _text(world, clause, lang), "target": _text(world, clause, "en")}


GENERATORS: dict[str, SplitGenerator] = {
    "topic": per_clause(_topic),
    "nli": per_clause(_nli),
    "pos": per_clause(_pos),
    "upos": per_clause(_upos),
    "ner": per_clause(_ner),
    "copa": _copa,
    "social": _social,
    "qa": _qa,
    "entity": _entity,
    "answer_sentence": _answer_sentence,
    "parallel": per_clause(_parallel),
}


class PoolGenerator(Protocol):
    """(world, task, split, languages, n=None) -> [{"id", "text"}], shared by a split's queries;
    `n` is the split's query count (pools sized by it fall back to their cap without it)."""

    def __call__(
        self, world: World, task: Task, split: str, languages: tuple[str, ...], n: int | None = None
    ) -> list[dict]: ...


POOLS: dict[str, PoolGenerator] = {
    "entity": _entity_pool,
    "answer_sentence": _answer_pool,
}


def _split_rng(world: World, task: Task, split: str) -> np.random.Generator:
    """Training and dev data are keyed by the generator and the English training sets a task
    declares: tasks that share them (XQuAD and MLQA both train on SQuAD v1.1; a noise family)
    see the same examples, as in the real benchmark. A target's test set is its own."""
    own = split == "test" and task.role == "target"
    identity = task.name if own else ",".join(task.train_data)
    return np.random.default_rng(
        [world.config.seed, _stable_int(task.synthetic), _stable_int(split), _stable_int(identity)]
    )


def synthetic_split(world: World, task: Task, split: str, lang: str, n: int) -> list[Example]:
    """`n` examples of one split in one language.

    Label noise applies to English train and dev (what the intermediate model learns from and is
    selected on), at the same positions for every task of a generator and noise level.
    """
    if not task.synthetic:
        raise ValueError(f"task {task.name!r} has no synthetic version; use data.source: hub")
    rng = _split_rng(world, task, split)
    examples = GENERATORS[task.synthetic](world, task, rng, lang, n, split=split)
    if task.noise > 0 and split in ("train", "dev"):
        noise_rng = np.random.default_rng([world.config.seed, _stable_int(task.name), 7])
        for example in examples:
            if noise_rng.random() < task.noise:
                example["label"] = int(noise_rng.integers(len(task.labels)))
    return examples


def task_data(world: World, task: Task, sizes: SplitSizes, languages: tuple[str, ...]) -> TaskData:
    """English train and dev; each evaluated language's test; and the dev and test pools of
    retrieval generators that have a candidate pool, where each query's gold ids are narrowed
    to those in its split's pool."""
    train = {"en": synthetic_split(world, task, "train", "en", sizes.train)}
    dev = {"en": synthetic_split(world, task, "dev", "en", sizes.dev)}
    test = {}
    if task.role == "target":
        test = {
            lang: synthetic_split(world, task, "test", lang, sizes.test)
            for lang in task.evaluates(languages)
        }
    pools = {}
    if task.synthetic in POOLS:
        pool_of = POOLS[task.synthetic]
        pools = {
            split: pool_of(world, task, split, languages, n)
            for split, n in (("dev", sizes.dev), ("test", sizes.test))
        }
        for split, by_lang in (("dev", dev), ("test", test)):
            ids = {c["id"] for c in pools[split]}
            for examples in by_lang.values():
                for example in examples:
                    example["gold"] = [g for g in example["gold"] if g in ids]
    return TaskData(train=train, dev=dev, test=test, pools=pools)

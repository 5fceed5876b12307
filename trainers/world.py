"""The built-in synthetic world: one concept space, English plus synthetic languages.

Every sentence is built from concepts first (a `Clause`), then realized in a language. Languages
differ from English in lexical overlap (a fraction of words spelled exactly as in English), script
(`fake` is English shifted into Cyrillic, so it shares no subword with English) and word order (SVO
or SOV). There is no parallel text: each language's monolingual corpus is drawn independently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CATEGORIES = ("animal", "food", "tool", "place", "person", "plant", "vehicle", "weather")
TAGS = ("DET", "ADJ", "NOUN", "PART", "VERB", "ADP")  # universal POS names, as UD-POS uses
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
# Latin onto Cyrillic, one to one: "fake English" keeps every word and changes every subword
_CYRILLIC = dict(zip("abcdefghijklmnopqrstuvwxyz", "абцдефгхийклмнопщрстувэжыз", strict=True))


class LanguageConfig(BaseModel):
    """One synthetic language: how many of its words are English words, its script and order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9]{1,7}$")
    overlap: float = Field(ge=0, le=1)  # share of the lexicon spelled exactly as in English
    script: Literal["latin", "cyrillic"] = "latin"
    order: Literal["svo", "sov"] = "svo"


DEFAULT_LANGUAGES = (
    LanguageConfig(code="en", overlap=1.0),
    LanguageConfig(code="ov80", overlap=0.8),
    LanguageConfig(code="ov50", overlap=0.5),
    LanguageConfig(code="sov50", overlap=0.5, order="sov"),
    LanguageConfig(code="fake", overlap=1.0, script="cyrillic"),
)


class WorldConfig(BaseModel):
    """Sizes and seed of the world; its hash names every cached artefact built from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    nouns_per_category: int = Field(24, ge=4, le=200)
    verbs: int = Field(40, ge=4, le=500)
    adjectives: int = Field(30, ge=4, le=500)
    prepositions: int = Field(8, ge=2, le=50)
    languages: tuple[LanguageConfig, ...] = DEFAULT_LANGUAGES
    sentences_per_language: int = Field(10_000, ge=100, le=1_000_000)

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Clause:
    """A sentence as concepts; `None` marks an absent optional part."""

    subj: int  # noun ids
    verb: int
    obj: int
    subj_adj: int | None = None
    obj_adj: int | None = None
    negated: bool = False
    prep: int | None = None
    pobj: int | None = None


class World:
    """Lexicons of every language over one concept space, and clause realization."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        rng = np.random.default_rng(config.seed)
        n_nouns = config.nouns_per_category * len(CATEGORIES)
        self.noun_category = np.repeat(np.arange(len(CATEGORIES)), config.nouns_per_category)
        sizes = {"noun": n_nouns, "verb": config.verbs, "adj": config.adjectives}
        sizes |= {"prep": config.prepositions, "det": 2, "neg": 1}
        self.sizes = sizes
        english = _invent_words(rng, sum(sizes.values()), syllables=(2, 3))
        self.lexicons = {lang.code: self._lexicon(rng, lang, english) for lang in config.languages}
        self.orders = {lang.code: lang.order for lang in config.languages}
        # selectional preference: each verb takes objects of two categories, so that a noun's
        # category shows in its contexts and pretraining can learn it
        n_categories = len(CATEGORIES)
        self.verb_objects = [
            (v % n_categories, (v * 3 + 1 + v // n_categories) % n_categories)
            for v in range(config.verbs)
        ]

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.lexicons)

    def _lexicon(
        self, rng: np.random.Generator, lang: LanguageConfig, english: list[str]
    ) -> dict[str, list[str]]:
        words = list(english)
        if lang.overlap < 1:
            fresh = _invent_words(rng, len(words), syllables=(2, 3), avoid=set(english))
            replace = rng.random(len(words)) >= lang.overlap
            words = [f if r else e for e, f, r in zip(english, fresh, replace, strict=True)]
        if lang.script == "cyrillic":
            words = ["".join(_CYRILLIC[c] for c in w) for w in words]
        lexicon, start = {}, 0
        for pos, n in self.sizes.items():
            lexicon[pos] = words[start : start + n]
            start += n
        return lexicon

    def sample_clause(
        self, rng: np.random.Generator, p_adj: float = 0.4, p_pp: float = 0.3
    ) -> Clause:
        n_nouns = self.sizes["noun"]
        has_pp = rng.random() < p_pp
        verb = int(rng.integers(self.sizes["verb"]))
        per = self.config.nouns_per_category
        category = self.verb_objects[verb][int(rng.integers(2))]
        obj = int(category * per + rng.integers(per))
        if rng.random() < 0.1:
            obj = int(rng.integers(n_nouns))
        return Clause(
            subj=int(rng.integers(n_nouns)),
            verb=verb,
            obj=obj,
            subj_adj=int(rng.integers(self.sizes["adj"])) if rng.random() < p_adj else None,
            obj_adj=int(rng.integers(self.sizes["adj"])) if rng.random() < p_adj else None,
            negated=bool(rng.random() < 0.3),
            prep=int(rng.integers(self.sizes["prep"])) if has_pp else None,
            pobj=int(rng.integers(n_nouns)) if has_pp else None,
        )

    def realize(self, clause: Clause, lang: str) -> list[tuple[str, str]]:
        """Words with their POS tags, in the language's word order."""
        lex = self.lexicons[lang]

        def noun_phrase(noun: int, adj: int | None, definite: bool = True) -> list[tuple[str, str]]:
            phrase = [(lex["det"][0 if definite else 1], "DET")]
            if adj is not None:
                phrase.append((lex["adj"][adj], "ADJ"))
            return [*phrase, (lex["noun"][noun], "NOUN")]

        subj = noun_phrase(clause.subj, clause.subj_adj)
        obj = noun_phrase(clause.obj, clause.obj_adj, definite=False)
        verb = [(lex["neg"][0], "PART")] if clause.negated else []
        verb.append((lex["verb"][clause.verb], "VERB"))
        pp = []
        if clause.prep is not None and clause.pobj is not None:
            pp = [(lex["prep"][clause.prep], "ADP"), *noun_phrase(clause.pobj, None)]
        if self.orders[lang] == "sov":
            return subj + obj + pp + verb
        return subj + verb + obj + pp

    def corpus(self, lang: str, n: int, seed: int) -> list[str]:
        """Monolingual text; a seed per language keeps corpora independent (no parallel text)."""
        rng = np.random.default_rng([self.config.seed, seed, _stable_int(lang)])
        return [
            " ".join(w for w, _ in self.realize(self.sample_clause(rng), lang)) for _ in range(n)
        ]


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _invent_words(
    rng: np.random.Generator, n: int, syllables: tuple[int, int], avoid: set[str] | None = None
) -> list[str]:
    """Distinct pseudo-words of consonant-vowel syllables."""
    taken = set(avoid or ())
    words: list[str] = []
    while len(words) < n:
        k = int(rng.integers(syllables[0], syllables[1] + 1))
        word = "".join(rng.choice(list(_CONSONANTS)) + rng.choice(list(_VOWELS)) for _ in range(k))
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words

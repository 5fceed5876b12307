"""Every task the sweep can use, one declarative entry each.

A task in an existing format is one `Task` entry and nothing else: its format (`trainers.heads`)
brings the head, encoding, loss and decoding; its metric family (`trainers.metrics`) the score; its
`synthetic` generator (`trainers.synthetic`) the built-in world's version; its `source`
(`trainers/sources.yaml`) the real data set. Differences between tasks live in the entry.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Literal

from trainers.world import CATEGORIES, TAGS

Example = dict  # the shape of each format's examples is documented on its Format class


@dataclass(frozen=True)
class Task:
    name: str
    role: Literal["intermediate", "target"]
    format: str  # a key of trainers.heads.FORMATS: head, collator, loss, decoding
    labels: tuple[str, ...] = ()  # class, tag or choice-position names; () for QA and retrieval
    metric: str = ""  # metric family in trainers.metrics.METRICS; "" means the format's name
    category: str = ""  # XTREME-R category of a target (the paper's average groups by it)
    languages: tuple[str, ...] = ()  # evaluation languages of the real data set (XTREME-R lists)
    source: str = ""  # entry in trainers/sources.yaml; "" means synthetic only
    synthetic: str = ""  # generator in trainers.synthetic; "" means real data only
    noise: float = 0.0  # share of English train/dev labels replaced at random: planted difficulty
    before: tuple[str, ...] = ()  # tasks trained first, in order, on the same model (XCOPA: SIQA)
    train_data: tuple[str, ...] = ()  # English training sets used; shared ones flag a confound
    layer: int | None = None  # pooled hidden layer for training-free retrieval; None: the middle

    @property
    def metric_family(self) -> str:
        return self.metric or self.format

    @property
    def chance(self) -> float:
        """Expected primary score of a uniform random guess (NaN where no such guess exists)."""
        if self.format in ("classification", "multiple_choice") and self.labels:
            return 1 / len(self.labels)
        return math.nan

    def evaluates(self, languages: tuple[str, ...]) -> tuple[str, ...]:
        """Which of `languages` this target is evaluated on: its real-data languages when it has
        them, except that synthetic worlds keep every language but English for tasks without an
        English test set (Tatoeba retrieves xx -> en)."""
        if not self.languages:
            return languages
        return tuple(lang for lang in languages if lang != "en" or "en" in self.languages)


def shares_training_data(intermediate: Task, target: Task) -> bool:
    """True when the target's English training data, or that of any stage trained before it
    (`before`, through the registry, stages of stages included), is also the intermediate's:
    e.g. SQuAD v1.1 as intermediate for XQuAD, MLQA and LAReQA, and for Tatoeba when the study
    trains it on XQuAD first (XTREME-R's baseline)."""
    return bool(set(intermediate.train_data) & training_data(target))


def training_data(task: Task) -> set[str]:
    """The English training sets a task's model has seen: its own and its stages' (recursive)."""
    seen, out, pending = {task.name}, set(task.train_data), list(task.before)
    while pending:
        name = pending.pop()
        if name in seen or name not in TASKS:  # a cycle or an unregistered stage: no data known
            continue
        seen.add(name)
        out |= set(TASKS[name].train_data)
        pending.extend(TASKS[name].before)
    return out


NLI_LABELS = ("entailment", "neutral", "contradiction")
UPOS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip
NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")  # PAN-X's ClassLabel order


def _choices(n: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(n))


def _langs(codes: str) -> tuple[str, ...]:
    """XTREME-R evaluation languages of a task, space-separated, in the reference's order."""
    return tuple(codes.split())


SQUAD = ("squad_v1.1",)

TARGETS = (
    Task(
        name="xnli",
        role="target",
        format="classification",
        labels=NLI_LABELS,
        category="classification",
        languages=_langs("ar bg de el en es fr hi ru sw th tr ur vi zh"),
        source="xnli",
        synthetic="nli",
        train_data=("mnli",),
        # XNLI: sentence-pair inference, trained on MNLI
    ),
    Task(
        name="xcopa",
        role="target",
        format="multiple_choice",
        labels=_choices(2),
        category="classification",
        languages=_langs("et ht id it qu sw ta th tr vi zh"),
        source="xcopa",
        synthetic="copa",
        before=("siqa",),
        train_data=("siqa", "copa"),
        # XCOPA: causal commonsense, 2 choices; SIQA first, then COPA (en)
    ),
    Task(
        name="udpos",
        role="target",
        format="tagging",
        labels=UPOS,
        category="structured_prediction",
        languages=_langs(
            "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te "
            "th tl tr ur vi yo zh lt pl uk wo ro"
        ),
        source="udpos",
        synthetic="upos",
        train_data=("ud_english",),
        # UD-POS: universal part-of-speech tags
    ),
    Task(
        name="panx",
        role="target",
        format="tagging",
        labels=NER_TAGS,
        category="structured_prediction",
        languages=_langs(
            "ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg "
            "ru ja ka ko th sw yo my zh kk tr et fi hu qu pl uk az lt pa gu ro"
        ),
        source="panx",
        synthetic="ner",
        train_data=("wikiann_en",),
        # WikiANN (PAN-X) named entities, IOB2
    ),
    Task(
        name="xquad",
        role="target",
        format="qa",
        category="qa",
        languages=_langs("en es de el ru tr ar vi th zh hi ro"),
        source="xquad",
        synthetic="qa",
        train_data=SQUAD,
        # XQuAD: extractive QA, trained on SQuAD v1.1
    ),
    Task(
        name="mlqa",
        role="target",
        format="qa",
        metric="qa_mlqa",
        category="qa",
        languages=_langs("en es de ar hi vi zh"),
        source="mlqa",
        synthetic="qa",
        train_data=SQUAD,
        # MLQA: extractive QA, language-specific answer normalization
    ),
    Task(
        name="tydiqa",
        role="target",
        format="qa",
        category="qa",
        languages=_langs("en ar bn fi id ko ru sw te"),
        source="tydiqa",
        synthetic="qa",
        train_data=("tydiqa_en",),
        # TyDiQA-GoldP: extractive QA, trained on its own English train
    ),
    Task(
        name="mewslix",
        role="target",
        format="dual_encoder",
        metric="retrieval_mrr",
        category="retrieval",
        languages=_langs("ar de en es fa ja pl ro ta tr uk"),
        source="mewslix",
        synthetic="entity",
        train_data=("mewslix_en",),
        # Mewsli-X: mention to English entity description, dual encoder
    ),
    Task(
        name="lareqa",
        role="target",
        format="dual_encoder",
        metric="retrieval_map",
        category="retrieval",
        languages=_langs("ar de el en es hi ru th tr vi zh"),
        source="lareqa",
        synthetic="answer_sentence",
        train_data=SQUAD,
        # LAReQA (XQuAD-R): question to answer sentence in any language, dual encoder
    ),
    Task(
        name="tatoeba",
        role="target",
        format="sentence_retrieval",
        metric="retrieval_top1",
        category="retrieval",
        languages=_langs(
            "ar he vi id jv tl eu ml ta te af nl de el bn hi mr ur fa fr it pt es bg ru ja "
            "ka ko th sw zh kk tr et fi hu az lt pl uk ro"
        ),
        source="tatoeba",
        synthetic="parallel",
        # Tatoeba: xx -> en nearest sentence by mean-pooled layer, no training
    ),
    # quick synthetic targets of the small demo
    Task(
        name="nli",
        role="target",
        format="classification",
        labels=NLI_LABELS,
        category="classification",
        synthetic="nli",
        # XNLI-like sentence-pair inference (synthetic only)
    ),
    Task(
        name="pos",
        role="target",
        format="tagging",
        labels=TAGS,
        category="structured_prediction",
        synthetic="pos",
        # UD-POS-like part-of-speech tagging (synthetic only)
    ),
)

INTERMEDIATES = (
    # Phang et al. 2020
    Task(
        name="anli_plus",
        role="intermediate",
        format="classification",
        labels=NLI_LABELS,
        source="anli_plus",
        train_data=("anli", "mnli", "snli"),
        # ANLI+: ANLI R1-R3 + MNLI + SNLI in one NLI head
    ),
    Task(
        name="mnli",
        role="intermediate",
        format="classification",
        labels=NLI_LABELS,
        source="mnli",
        train_data=("mnli",),
    ),
    Task(
        name="qqp",
        role="intermediate",
        format="classification",
        labels=("not_duplicate", "duplicate"),
        source="qqp",
        train_data=("qqp",),
    ),
    Task(
        name="squad_v2",
        role="intermediate",
        format="qa",
        source="squad_v2",
        train_data=(*SQUAD, "squad_v2"),  # SQuAD 2.0 contains every v1.1 training question
        # SQuAD 2.0: extractive QA with unanswerable questions
    ),
    Task(
        name="squad",
        role="intermediate",
        format="qa",
        source="squad",
        synthetic="qa",
        train_data=SQUAD,
        # SQuAD v1.1
    ),
    Task(
        name="hellaswag",
        role="intermediate",
        format="multiple_choice",
        labels=_choices(4),
        source="hellaswag",
        train_data=("hellaswag",),
    ),
    Task(
        name="ccg",
        role="intermediate",
        format="tagging",
        source="ccg",
        train_data=("ccgbank",),
        # CCG supertagging (CCGbank, LDC: local files only); tags from the data
    ),
    Task(
        name="cosmosqa",
        role="intermediate",
        format="multiple_choice",
        labels=_choices(4),
        source="cosmosqa",
        train_data=("cosmosqa",),
    ),
    Task(
        name="commonsenseqa",
        role="intermediate",
        format="multiple_choice",
        labels=_choices(5),
        source="commonsenseqa",
        train_data=("commonsenseqa",),
    ),
    # also useful (XTREME-R reference)
    Task(
        name="siqa",
        role="intermediate",
        format="multiple_choice",
        labels=_choices(3),
        source="siqa",
        synthetic="social",
        train_data=("siqa",),
        # Social IQa; also XCOPA's first training stage
    ),
    Task(
        name="sst2",
        role="intermediate",
        format="classification",
        labels=("negative", "positive"),
        source="sst2",
        train_data=("sst2",),
    ),
    Task(
        name="boolq",
        role="intermediate",
        format="classification",
        labels=("false", "true"),
        source="boolq",
        train_data=("boolq",),
    ),
    Task(
        name="rte",
        role="intermediate",
        format="classification",
        labels=("entailment", "not_entailment"),
        source="rte",
        train_data=("rte",),
    ),
    # synthetic families of planted difficulty: same inputs and size, difficulty set by `noise`
    *(
        Task(
            name=f"topic_{level}",
            role="intermediate",
            format="classification",
            labels=CATEGORIES,
            synthetic="topic",
            noise=noise,
            # category of the subject; the level's share of labels replaced at random
        )
        for level, noise in (("easy", 0.0), ("mid", 0.25), ("hard", 0.5))
    ),
    *(
        Task(
            name=f"choice_{level}",
            role="intermediate",
            format="multiple_choice",
            labels=_choices(3),
            synthetic="social",
            noise=noise,
            # SIQA-like choice; the level's share of labels replaced at random
        )
        for level, noise in (("easy", 0.0), ("hard", 0.5))
    ),
)

# every language of the real study: the union of the targets' own lists
XTREME_R_LANGUAGES = tuple(sorted({lang for task in TARGETS for lang in task.languages}))


def _index(tasks: tuple[Task, ...]) -> dict[str, Task]:
    index: dict[str, Task] = {}
    for task in tasks:
        if task.name in index:
            raise ValueError(f"task {task.name!r} is registered twice")
        if not (task.source or task.synthetic):
            raise ValueError(f"task {task.name!r} has neither a source nor a synthetic generator")
        index[task.name] = task
    return index


TASKS = _index(TARGETS + INTERMEDIATES)
PHANG_INTERMEDIATES = (
    "anli_plus", "mnli", "qqp", "squad_v2", "squad", "hellaswag", "ccg", "cosmosqa",
    "commonsenseqa",
)  # fmt: skip


def get_task(name: str, role: str | None = None) -> Task:
    """The registered task; a miss names the closest match."""
    pool = {n: t for n, t in TASKS.items() if role is None or t.role == role}
    if name not in pool:
        close = difflib.get_close_matches(name, pool, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(pool))}"
        raise KeyError(f"unknown {role or ''} task {name!r}{hint}".replace("  ", " "))
    return pool[name]


@dataclass(frozen=True)
class SplitSizes:
    train: int
    dev: int
    test: int


@dataclass(frozen=True)
class TaskData:
    """One trial's examples of a task, split -> language -> examples.

    Zero-shot: `train` and `dev` hold English only (`{"en": [...]}`); `test` one list per
    evaluated language (empty for intermediates and stages). `pools` holds the retrieval
    candidates of the dev and test splits (`{split: [{"id", "text"}]}`) for formats that rank a
    pool, and is empty otherwise. Frozen: cleaning (`trainers.quality`) and blanking (the
    V-information null model) make a new one.
    """

    train: dict[str, list[Example]]
    dev: dict[str, list[Example]]
    test: dict[str, list[Example]] = field(default_factory=dict)
    pools: dict[str, list[Example]] = field(default_factory=dict)

    def split(self, name: str) -> dict[str, list[Example]]:
        """The examples of split `name` ("train", "dev" or "test") by language."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; allowed: {', '.join(SPLITS)}")
        return getattr(self, name)


SPLITS = ("train", "dev", "test")  # the splits of examples; retrieval pools are candidates

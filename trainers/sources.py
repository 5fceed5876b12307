"""Real data of every task with a `source`: the entries of trainers/sources.yaml, loaded through
`datasets.load_dataset` and converted to the example shapes of each format, in the layout of
`trainers.synthetic.task_data`.

An entry says where a source lives (hub id, config, revision, data files), which split plays each
role (train, dev, test; pool: retrieval candidates) and which converter turns one hub row into
examples (one small function per hub schema, in trainers/converters.py). A user's
`data.sources.<name>` (`overrides[name]` here) merges over the entry, so a mirror or local files
replace a hub copy that is gone or unreachable; docs/data.md lists every entry and the schema it
assumes.

Zero-shot protocol: training and model-selection data are English only; a target's test split
is loaded for each requested language it has. Dataset scripts are never run (no
`trust_remote_code`): repositories that still ship one are read from their parquet conversion.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trainers import ud
from trainers.converters import CONVERTERS, Context
from trainers.real_files import LOCAL_BUILDERS, load_local
from trainers.source_config import as_dicts
from trainers.tasks import Example, Task, TaskData, get_task

log = logging.getLogger(__name__)

SOURCES_FILE = Path(__file__).with_name("sources.yaml")
ROLES = ("train", "dev", "test", "pool")
LOCATION = ("path", "name", "revision", "data_files")  # a user's `path` replaces all four
ENTRY_ONLY = (*ROLES, "langs", "parts")  # keys that are not settings of one split
POOL_LANG = "all"  # the language shown for a retrieval candidate pool (it has none)
_MISSING = "<no data_files for this role>"  # a role-keyed data_files without this role

# English names, as google/xtreme spells its udpos configs ({language} in a template)
LANGUAGE_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "az": "Azerbaijani", "bg": "Bulgarian", "bn": "Bengali",
    "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian",
    "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French", "gu": "Gujarati",
    "he": "Hebrew", "hi": "Hindi", "ht": "Haitian", "hu": "Hungarian", "id": "Indonesian",
    "it": "Italian", "ja": "Japanese", "jv": "Javanese", "ka": "Georgian", "kk": "Kazakh",
    "ko": "Korean", "lt": "Lithuanian", "ml": "Malayalam", "mr": "Marathi", "ms": "Malay",
    "my": "Burmese", "nl": "Dutch", "pa": "Punjabi", "pl": "Polish", "pt": "Portuguese",
    "qu": "Quechua", "ro": "Romanian", "ru": "Russian", "sw": "Swahili", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian",
    "ur": "Urdu", "vi": "Vietnamese", "wo": "Wolof", "yo": "Yoruba", "zh": "Chinese",
}  # fmt: skip


class DataUnavailable(ValueError):
    """A source could not be loaded or read; the message is one line that names the task, the
    source, the role and language, what was tried, why it failed and how to provide it."""


# ---------------------------------------------------------------------------------------------
# entries


@functools.cache
def _yaml_entries() -> dict[str, dict]:
    with SOURCES_FILE.open(encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def source_entries() -> dict[str, dict]:
    """Every entry of trainers/sources.yaml (a copy: callers may change it)."""
    return json.loads(json.dumps(_yaml_entries()))


@dataclass(frozen=True)
class SplitSource:
    """One split to load: an entry resolved for a role and a language, templates filled."""

    source: str  # the entry's name
    key: str  # where a user overrides it: "xnli", or "anli_plus.parts.snli"
    role: str  # train, dev, test or pool
    lang: str
    path: str | None
    name: str | None
    split: str
    revision: str | None
    data_files: Any  # one file, a glob or a list of them; None: the repository's own
    converter: str
    where: tuple[tuple[str, str], ...]
    prefix: tuple[tuple[str, str], ...]
    tag_names: tuple[str, ...]
    cache_dir: str | None

    def describe(self) -> str:
        """What was tried, e.g. "facebook/xnli config 'ar' split 'test'"."""
        text = str(self.path)
        if self.name:
            text += f" config {self.name!r}"
        if self.revision:
            text += f" revision {self.revision!r}"
        if self.data_files is not None:
            text += f" files {self.data_files}"
        return f"{text} split {self.split!r}"

    def load_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"path": self.path, "name": self.name, "split": self.split}
        if self.revision:
            kwargs["revision"] = self.revision
        if self.data_files is not None:
            kwargs["data_files"] = {self.split: self.data_files}
        if self.cache_dir:
            kwargs["cache_dir"] = self.cache_dir
        return kwargs


def _layer(entry: dict, role: str, lang: str) -> dict:
    """An entry's settings for one role and language: top level, then the role's, then the
    language's (`langs.<lang>`)."""
    top = {k: v for k, v in entry.items() if k not in ENTRY_ONLY}
    return {**top, **(entry.get(role) or {}), **((entry.get("langs") or {}).get(lang) or {})}


def _fill_templates(value: Any, fields: dict[str, str]) -> Any:
    """Templates filled: {lang}, {language} and {code} in strings, lists and mappings."""
    if isinstance(value, str):
        try:
            return value.format_map(fields)
        except (KeyError, ValueError, IndexError) as err:
            raise ValueError(
                f"bad template {value!r} ({err}); fields are {{lang}}, {{language}}, {{code}}, "
                "{ud_version}"
            ) from None
    if isinstance(value, list | tuple):
        return [_fill_templates(v, fields) for v in value]
    if isinstance(value, dict):
        return {k: _fill_templates(v, fields) for k, v in value.items()}
    return value


class Source:
    """A task's entry and the user's override of it, resolved into Specs on demand."""

    def __init__(self, task: Task, overrides: dict | None = None) -> None:
        entries = _yaml_entries()
        if not task.source:
            raise ValueError(f"task {task.name!r} has no real data source (synthetic only)")
        if task.source not in entries:
            raise ValueError(f"task {task.name!r}: no entry {task.source!r} in {SOURCES_FILE}")
        self.task = task
        self.name = task.source
        self.entry = entries[task.source]
        raw = (overrides or {}).get(task.source)
        try:  # typed in the experiment config already; plain mappings are checked here
            self.user = as_dicts({task.source: raw})[task.source] if raw else {}
        except ValueError as err:
            raise ValueError(f"data.sources.{err}") from None

    def _parts(self) -> list[tuple[str, dict, dict]]:
        """(override key, entry, user override) per concatenated part; one for most sources."""
        if "parts" not in self.entry:
            return [(self.name, self.entry, self.user)]
        top = {k: v for k, v in self.entry.items() if k != "parts"}
        mine = {k: v for k, v in self.user.items() if k != "parts"}
        user_parts = self.user.get("parts") or {}
        return [
            (f"{self.name}.parts.{part}", {**top, **entry}, {**mine, **user_parts.get(part, {})})
            for part, entry in self.entry["parts"].items()
        ]

    def specs(self, role: str, lang: str) -> list[SplitSource]:
        """One SplitSource per part that has `role`; [] where the source has no such split (Tatoeba
        has no training data, intermediates have no test split)."""
        return [
            self._spec(key, entry, user, role, lang)
            for key, entry, user in self._parts()
            if role in entry or role in user
        ]

    def _spec(self, key: str, entry: dict, user: dict, role: str, lang: str) -> SplitSource:
        base, mine = _layer(entry, role, lang), _layer(user, role, lang)
        if "path" in mine:  # a mirror or local files: the entry's location means nothing there
            base = {k: v for k, v in base.items() if k not in LOCATION}
        merged = {**base, **mine}
        fields = {
            "lang": lang,
            "language": LANGUAGE_NAMES.get(lang, lang),
            "code": str((merged.get("codes") or {}).get(lang, lang)),
            "ud_version": ud.ud_version(lang),  # 2.5, or 2.7 for XTREME-R's additions
        }
        data_files = merged.get("data_files")
        if isinstance(data_files, dict):  # keyed by role
            data_files = data_files.get(role, _MISSING)
        if data_files is not _MISSING:
            data_files = _fill_templates(data_files, fields)
        spec = SplitSource(
            source=self.name,
            key=key,
            role=role,
            lang=lang,
            path=merged.get("path"),
            name=_fill_templates(merged.get("name"), fields),
            split=str(merged.get("split") or role),
            revision=merged.get("revision"),
            data_files=data_files,
            converter=str(merged.get("converter") or ""),
            where=tuple(
                (k, str(v)) for k, v in _fill_templates(merged.get("where") or {}, fields).items()
            ),
            prefix=tuple(
                (k, str(v)) for k, v in _fill_templates(merged.get("prefix") or {}, fields).items()
            ),
            tag_names=tuple(merged.get("tag_names") or ()),
            cache_dir=str(merged["cache_dir"]) if merged.get("cache_dir") else None,
        )
        if spec.converter not in CONVERTERS:
            raise ValueError(
                f"source {key!r}: unknown converter {spec.converter!r}; known: "
                f"{', '.join(sorted(CONVERTERS))}"
            )
        return spec


# ---------------------------------------------------------------------------------------------
# loading


def _unavailable(task: Task, spec: SplitSource, reason: str) -> DataUnavailable:
    reason = " ".join(str(reason).split())
    if len(reason) > 240:
        reason = reason[:237] + "..."
    example = f"{{path: json, data_files: {{{spec.role}: /path/to/{spec.role}.{{lang}}.jsonl}}}}"
    return DataUnavailable(
        f"task {task.name!r}: source {spec.key!r} ({spec.role}, lang {spec.lang}) could not be "
        f"loaded from {spec.describe()}: {reason}; provide it locally with "
        f"data.sources.{spec.key}: {example} (see docs/data.md)"
    )


@functools.lru_cache(maxsize=64)
def _load_cached(kwargs_json: str) -> Any:
    import datasets  # heavy; only real-data runs pay for it

    return datasets.load_dataset(**json.loads(kwargs_json))


def _load(task: Task, spec: SplitSource) -> Any:
    """The split as a `datasets.Dataset` (memory-mapped Arrow), or DataUnavailable."""
    if not spec.path:
        raise _unavailable(task, spec, "no public hub copy; local files are required")
    if spec.data_files is _MISSING:
        raise _unavailable(task, spec, f"data_files has no {spec.role!r} entry")
    log.info("%s %s/%s: %s", task.name, spec.role, spec.lang, spec.describe())
    try:
        if spec.path in LOCAL_BUILDERS:  # the data set's original files (trainers.real_files)
            return load_local(spec.path, spec.data_files, spec.lang, spec.split)
        hub_udpos = spec.path == ud.HUB_ID and spec.converter == "udpos"
        if hub_udpos and (warning := ud.hub_warning(spec.lang)):
            _warn_once(warning)
        return _load_cached(json.dumps(spec.load_kwargs(), sort_keys=True))
    except Exception as err:  # offline, missing file, unknown config, script-only repository ...
        raise _unavailable(task, spec, f"{type(err).__name__}: {err}") from err


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


@dataclass
class _Split:
    spec: SplitSource
    rows: Any  # datasets.Dataset
    ctx: Context


def _class_names(features: Any) -> dict[str, list[str]]:
    """ClassLabel names of each column (also of a list-of-ClassLabel column such as pos_tags)."""
    from datasets import ClassLabel

    names = {}
    for column, feature in (features or {}).items():
        inner = getattr(feature, "feature", None)
        if isinstance(feature, ClassLabel):
            names[column] = list(feature.names)
        elif isinstance(inner, ClassLabel):
            names[column] = list(inner.names)
    return names


def _open(task: Task, specs: list[SplitSource], pool: dict[str, str]) -> list[_Split]:
    splits = []
    for spec in specs:
        rows = _load(task, spec)
        splits.append(_Split(spec, rows, Context(task, spec, _class_names(rows.features), pool)))
    return splits


def _get(row: dict, dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _keep(row: dict, spec: SplitSource) -> bool:
    for column, want in spec.where:
        if str(_get(row, column)) != want:
            return False
    return all(str(_get(row, c)).lower().startswith(want.lower()) for c, want in spec.prefix)


def _convert(split: _Split, row: dict) -> list[Example]:
    if not _keep(row, split.spec):
        return []
    try:
        return CONVERTERS[split.spec.converter](row, split.ctx)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise _unavailable(
            split.ctx.task,
            split.spec,
            f"a row does not match the {split.spec.converter!r} schema "
            f"({type(err).__name__}: {err})",
        ) from err


def _in_order(splits: list[_Split], limit: int | None = None) -> list[Example]:
    """Examples of the splits concatenated in order; the first `limit` when given."""
    out: list[Example] = []
    for split in splits:
        for row in split.rows:
            out += _convert(split, row)
            if limit is not None and len(out) >= limit:
                return out[:limit]
    return out


def _sampled(task: Task, splits: list[_Split], n: int, seed: int) -> list[Example]:
    """Exactly `n` distinct examples drawn without replacement (rows in a seeded permutation of
    all parts together, so parts are mixed in proportion to their size), in source order."""
    sizes = [len(s.rows) for s in splits]
    offsets = np.cumsum([0, *sizes])
    order = np.random.default_rng(seed).permutation(int(offsets[-1]))
    picked: list[tuple[int, Example]] = []
    chunk = max(2 * n, 1024)
    for start in range(0, len(order), chunk):
        block = order[start : start + chunk]
        which = np.searchsorted(offsets, block, side="right") - 1
        rows: dict[int, tuple[_Split, dict]] = {}
        for part in np.unique(which):
            local = (block[which == part] - offsets[part]).tolist()
            split = splits[int(part)]
            for i, row in zip(local, split.rows.select(local), strict=True):
                rows[int(offsets[part]) + i] = (split, row)
        for g in block.tolist():
            split, row = rows[g]
            picked += [(g, ex) for ex in _convert(split, row)]
        if len(picked) >= n:
            break
    if len(picked) < n:
        raise ValueError(
            f"task {task.name!r}: train_size={n} requested but only {len(picked)} English "
            f"training examples exist"
        )
    picked = sorted(picked[:n], key=lambda p: p[0])  # the training loop shuffles anyway
    return [ex for _, ex in picked]


def _target_langs(task: Task, languages: Iterable[str]) -> list[str]:
    """Requested languages the task has, in request order; others are skipped, not errors."""
    if task.role != "target":
        return []
    return list(dict.fromkeys(lang for lang in languages if lang in task.languages))


def load_task_data(
    task: Task,
    languages: Iterable[str],
    train_size: int | None,
    seed: int,
    overrides: dict | None = None,
    dev_size: int | None = None,
    test_size: int | None = None,
) -> tuple[Task, TaskData]:
    """The task and its data from the task's real source, as `trainers.synthetic.task_data`
    gives them: English train and dev, each evaluated language's test, and the dev and test
    pools (`[{"id", "text"}]`) for dual-encoder retrieval.

    `train_size` draws exactly that many distinct English training examples with
    `numpy.random.default_rng(seed)` (size-matched intermediates); fewer available is an error.
    `dev_size` and `test_size` keep the first N (deterministic). The returned task differs from
    the given one only where the data decides its labels (CCG: the sorted training tags).
    Raises DataUnavailable (one line) when a split cannot be loaded.
    """
    sizes = {"train_size": train_size, "dev_size": dev_size, "test_size": test_size}
    for what, size in sizes.items():
        if size is not None and size < 1:
            raise ValueError(f"task {task.name!r}: {what} must be at least 1 (got {size})")
    source = Source(task, overrides)
    pools: dict[str, dict[str, str]] = {"dev": {}, "test": {}}
    data: dict[str, dict[str, list[Example]]] = {"train": {"en": []}, "dev": {"en": []}, "test": {}}

    train_splits = _open(task, source.specs("train", "en"), {})
    if train_splits and train_size is not None:
        data["train"]["en"] = _sampled(task, train_splits, train_size, seed)
    elif train_splits:
        data["train"]["en"] = _in_order(train_splits)
    data["dev"]["en"] = _in_order(_open(task, source.specs("dev", "en"), pools["dev"]), dev_size)
    _require(task, source, "train", "en", data["train"]["en"])
    _require(task, source, "dev", "en", data["dev"]["en"])

    for lang in _target_langs(task, languages):
        test_splits = _open(task, source.specs("test", lang), pools["test"])
        data["test"][lang] = _in_order(test_splits, test_size)
        _require(task, source, "test", lang, data["test"][lang])
    if data["test"] and task.format == "dual_encoder":
        _in_order(_open(task, source.specs("pool", POOL_LANG), pools["test"]))
        if source.entry.get("parallel_gold"):
            _share_gold(data["test"])

    task = _with_labels(task, source, train_splits, data, sampled=train_size is not None)
    for split in ("train", "dev", "test"):
        for examples in data[split].values():
            for example in examples:
                for key in [k for k in example if k.startswith("_")]:
                    del example[key]  # converter bookkeeping (parallel ids)
    candidates = {}
    if task.format == "dual_encoder":
        candidates = {
            split: [{"id": i, "text": text} for i, text in pool.items()]
            for split, pool in pools.items()
        }
    return task, TaskData(**data, pools=candidates)


def _require(task: Task, source: Source, role: str, lang: str, examples: list[Example]) -> None:
    """A split the source has must yield examples: an empty one means wrong files or filters."""
    specs = source.specs(role, lang)
    if specs and not examples:
        raise _unavailable(task, specs[0], "no usable rows (wrong files, config or filters?)")


def _share_gold(test: dict[str, list[Example]]) -> None:
    """Parallel evaluation sets (XQuAD-R): a query's gold is every loaded language's answer to
    the example with the same id, so retrieval runs over one multilingual pool."""
    gold: dict[str, set[str]] = {}
    for examples in test.values():
        for example in examples:
            gold.setdefault(example["_key"], set()).update(example["gold"])
    for examples in test.values():
        for example in examples:
            example["gold"] = sorted(gold[example["_key"]])


def _with_labels(
    task: Task, source: Source, train_splits: list[_Split], data: dict, sampled: bool
) -> Task:
    """Tagging converters give tag names; map them to ids into the task's labels, deriving the
    labels first where neither the task nor the entry has any (CCG supertags)."""
    if task.format != "tagging":
        return task
    labels = tuple(task.labels or source.entry.get("labels") or ())
    derived = not labels
    if derived:
        # from the whole training set, so that a subsample never changes the label set
        everything = _in_order(train_splits) if sampled else data["train"]["en"]
        labels = tuple(sorted({tag for ex in everything for tag in ex["tags"]}))
        task = dataclasses.replace(task, labels=labels)
    index = {tag: i for i, tag in enumerate(labels)}
    for split in ("train", "dev", "test"):
        for lang, examples in data[split].items():
            kept = []
            for example in examples:
                unknown = [t for t in example["tags"] if t not in index]
                if unknown and derived and split != "train":
                    continue  # a supertag never seen in training cannot be predicted
                if unknown:
                    spec = source.specs(split, lang)[0]
                    raise _unavailable(
                        task, spec, f"tag {unknown[0]!r} is not one of the task's labels"
                    )
                kept.append({**example, "tags": [index[t] for t in example["tags"]]})
            if len(kept) < len(examples):
                log.warning(
                    "%s %s/%s: dropped %d sentences with tags unseen in training",
                    task.name, split, lang, len(examples) - len(kept),
                )  # fmt: skip
            data[split][lang] = kept
    return task


def check_available(
    tasks: Iterable[Task | str],
    languages: Iterable[str],
    overrides: dict | None = None,
    *,
    raise_error: bool = True,
) -> DataUnavailable | None:
    """Preflight before training: try every (task, role, language) a run needs, including
    stages trained before a target (XCOPA: SIQA), reading one example of each. The first
    problem is raised, or returned with raise_error=False; None when everything loads."""
    languages = tuple(languages)
    seen: set[str] = set()
    queue = [get_task(t) if isinstance(t, str) else t for t in tasks]
    while queue:
        task = queue.pop(0)
        if task.name in seen or not task.source:
            continue
        seen.add(task.name)
        queue += [get_task(name) for name in task.before]
        source = Source(task, overrides)
        needs = [("train", "en"), ("dev", "en")]
        needs += [("test", lang) for lang in _target_langs(task, languages)]
        if task.format == "dual_encoder" and len(needs) > 2:
            needs.append(("pool", POOL_LANG))
        try:
            for role, lang in needs:
                for spec in source.specs(role, lang):
                    split = _open(task, [spec], {})
                    if role != "pool" and not _in_order(split, 1):
                        raise _unavailable(task, spec, "no usable rows (wrong files or filters?)")
        except DataUnavailable as err:
            if raise_error:
                raise
            return err
    return None

"""Experiment configs: YAML validated into frozen pydantic models, every error one line.

Imports nothing heavy (no torch, no Ray): `itx plan` and config errors answer in under a second.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import stat
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trainers.health import HealthConfig
from trainers.mixing import Mixture, members_of, mixture_task
from trainers.paths import check_name, check_storage, excerpt
from trainers.settings import ModelConfig, PretrainConfig, TrainConfig
from trainers.source_config import SourceOverride, parse_overrides
from trainers.tasks import TASKS, XTREME_R_LANGUAGES, Task, get_task
from trainers.world import WorldConfig


class ConfigError(ValueError):
    """A config that cannot run; the message is one line naming key, value and what is allowed."""


class KeyProblem(ValueError):
    """A check of a section's own validator: the key(s) it concerns, dotted and relative to the
    section, and the one value to quote. `one_line` names those keys, where pydantic would name
    the section and quote all of it (the whole config, for a check of the top level)."""

    def __init__(self, keys: str | tuple[str, ...], message: str, *value: object) -> None:
        super().__init__(message)
        self.keys = (keys,) if isinstance(keys, str) else keys
        self.value = value  # () when the message itself names what is wrong


class DataSizes(BaseModel):
    """Where examples come from and how many. `train` (alias `train_size`) is the same N for every
    task of a sweep, drawn by the trial seed: difficulty separated from size. With real data,
    `train: null` uses each training set whole, and `dev`/`test` cap the evaluation sets."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    source: Literal["synthetic", "hub"] = "synthetic"  # built-in world, or `datasets` loaders
    train: int | None = Field(2000, ge=1, validation_alias=AliasChoices("train", "train_size"))
    dev: int | None = Field(500, ge=1)
    test: int | None = Field(500, ge=1)
    max_malformed: float = Field(0.01, ge=0, le=1)  # share of a split dropped before fatal
    # per-source overrides of trainers/sources.yaml: a mirror, a revision or local files;
    # names and keys checked here (trainers.source_config), before anything loads
    sources: dict[str, SourceOverride] = Field(default_factory=dict)

    @field_validator("sources", mode="before")
    @classmethod
    def _known_sources(cls, value: Any) -> dict[str, SourceOverride]:
        return parse_overrides(value if value is not None else {})

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: Any) -> Any:
        for name in sources if isinstance(sources, dict) else ():
            check_name(name)  # a source name may name a cache folder
        return sources

    @model_validator(mode="after")
    def _sizes(self) -> DataSizes:
        if self.source == "synthetic":
            for key in ("train", "dev", "test"):
                if getattr(self, key) is None:
                    raise KeyProblem(key, "required for synthetic data (null: real data only)")
        return self


class EncoderConfig(BaseModel):
    """A pretrained encoder from the hub (or a local folder) instead of the synthetic one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        min_length=1
    )  # e.g. FacebookAI/xlm-roberta-base or FacebookAI/xlm-roberta-large
    revision: str | None = None  # pin a commit for reproducible sweeps


class TaskOptions(BaseModel):
    """Per-task settings a study may change without a new registration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    layer: int | None = Field(None, ge=0, le=64)  # Tatoeba: pooled hidden layer
    before: tuple[str, ...] | None = None  # train these tasks first (Tatoeba: [xquad], as XTREME-R)
    noise: float | None = Field(None, ge=0, le=1)  # synthetic label noise
    max_length: int | None = Field(None, ge=8, le=4096)  # tokens per example for this task
    train: dict[str, Any] = Field(default_factory=dict)  # TrainConfig keys, e.g. {lr: 3.0e-5}

    @field_validator("train")
    @classmethod
    def _train_keys(cls, train: dict[str, Any]) -> dict[str, Any]:
        TrainConfig.model_validate(train)  # a bad key or value fails here, on its own line
        return train


class DifficultyConfig(BaseModel):
    """Difficulty measures recorded per (intermediate, seed) beside the English dev score."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    external: dict[str, float] = Field(default_factory=dict)  # a priori, e.g. published scores
    pvi: bool = True  # V-usable information: trains a null model per intermediate (label formats)
    similarity: bool = True  # TextEmb task embeddings: intermediate-target cosine


class Resources(BaseModel):
    """What each trial asks of Ray; the scheduler places trials by it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: int = Field(1, ge=1, le=256)  # also the trial's torch threads
    gpu: float = Field(0, ge=0, le=16)
    memory_gb: float = Field(0, ge=0, le=4096)
    pretrain_cpu: int = Field(2, ge=1, le=256)
    max_concurrent_trials: int = Field(2, ge=1, le=10_000)  # always set: see docs/DESIGN.md
    max_failures: int = Field(2, ge=0, le=100)
    num_cpus: int | None = Field(None, ge=1, le=4096)  # local Ray only; None = all of this machine
    # object-store roots: seconds between training-state upload starts (sweep/uploader.py)
    state_upload_every_s: float = Field(300.0, ge=0, le=86_400)

    @model_validator(mode="after")
    def _fits(self) -> Resources:
        if self.num_cpus is not None:
            for key in ("cpu", "pretrain_cpu"):
                if getattr(self, key) > self.num_cpus:
                    raise KeyProblem(
                        (key, "num_cpus"),
                        f"{key}={getattr(self, key)} exceeds num_cpus={self.num_cpus}: "
                        "no trial could ever be placed",
                    )
        return self


class Controls(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scratch: bool = True  # a random (never pretrained) encoder fine-tuned the same way


# the mixed model's fitting path, the one list (analysis.mixed uses it): the exact engine, or a
# cross-check; lme4 runs R
Backend = Literal["exact", "statsmodels", "lme4"]
BACKENDS: tuple[str, ...] = get_args(Backend)  # `itx report --backend` checks against these


class AnalysisConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Backend = "exact"


class MlflowTracking(BaseModel):
    """Log every trial as an MLflow run (Ray Tune's MLflowLoggerCallback): per-epoch English dev
    score and loss, the final zero-shot score, the trial's config as parameters. Needs the
    `tracking` extra (`pip install 'itx[tracking]'`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tracking_uri: str = Field(min_length=1)  # http://host:5000, databricks, or file:///abs/mlruns
    experiment_name: str | None = None  # default: the sweep's name


class Tracking(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mlflow: MlflowTracking | None = None  # None: no experiment tracking beyond Tune's own logs


class Experiment(BaseModel):
    """One sweep: intermediate x seed x target on a pretrained encoder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # a folder name, nothing more (trainers.paths.check_name)
    storage: str = "runs"  # root folder or URI; the run lives at <storage>/<name>
    encoder: EncoderConfig | None = None  # a hub encoder; None: pretrain the synthetic one
    world: WorldConfig = WorldConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()
    intermediates: tuple[str, ...] = Field(min_length=1)
    targets: tuple[str, ...] = Field(min_length=1)
    languages: tuple[str, ...] = Field(min_length=1)  # ["all"]: each task's XTREME-R languages
    seeds: tuple[Annotated[int, Field(ge=0, lt=2**32)], ...] = Field(min_length=1)  # numpy's range
    data: DataSizes = DataSizes()
    train: TrainConfig = TrainConfig()
    controls: Controls = Controls()
    resources: Resources = Resources()
    analysis: AnalysisConfig = AnalysisConfig()
    tracking: Tracking = Tracking()  # decides nothing about results: not part of trial keys
    mixtures: dict[str, Mixture] = Field(default_factory=dict)  # multi-task intermediates
    tasks: dict[str, TaskOptions] = Field(default_factory=dict)
    difficulty: DifficultyConfig = DifficultyConfig()
    health: HealthConfig = HealthConfig()  # degenerate fine-tunes: restart, exclude or flag

    @field_validator("name")
    @classmethod
    def _no_escape(cls, name: str) -> str:
        return check_name(name)  # the one rule for every name that reaches a path

    @field_validator("intermediates", "targets")
    @classmethod
    def _names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            check_name(name)
        return names

    @field_validator("mixtures", "tasks")
    @classmethod
    def _key_names(cls, entries: dict[str, Any]) -> dict[str, Any]:
        for name in entries:
            check_name(name)
        return entries

    @field_validator("storage")
    @classmethod
    def _storage(cls, storage: str) -> str:
        return check_storage(storage)

    @field_validator("intermediates", "targets", "languages", "seeds")
    @classmethod
    def _unique(cls, values: tuple) -> tuple:
        dupes = sorted({v for v in values if values.count(v) > 1}, key=str)
        if dupes:
            raise ValueError(f"duplicates {dupes}; list each once")
        return values

    @field_validator("intermediates")
    @classmethod
    def _not_reserved(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if name in ("none", "scratch"):
                raise ValueError(f"{name!r} is added by itx (baseline/control); list tasks only")
        return names

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            _registered(name, "target")
        return names

    @model_validator(mode="after")
    def _tasks_exist(self) -> Experiment:
        for name, mixture in self.mixtures.items():  # the entry, trainers.mixing.Mixture
            if name in TASKS:
                raise KeyProblem(
                    f"mixtures.{name}", f"{name!r} is a registered task; pick another name"
                )
            key = f"mixtures.{name}.tasks"
            members = [_registered(t, "intermediate", key) for t in mixture.tasks]
            shapes = {(m.format, m.labels) for m in members}
            if len(shapes) > 1:
                raise KeyProblem(
                    key,
                    "these tasks differ in format or labels; a mixture trains one head, so its"
                    " tasks must share both",
                    list(mixture.tasks),
                )
        for name in self.intermediates:
            if name not in self.mixtures:
                _registered(name, "intermediate", "intermediates")
        for name, options in self.tasks.items():
            _registered(name, None, "tasks")
            for stage in options.before or ():
                _registered(stage, None, f"tasks.{name}.before")
        for name in self.difficulty.external:
            if name not in self.intermediates:
                raise KeyProblem(
                    f"difficulty.external.{name}",
                    f"{name!r} is not an intermediate of this sweep; "
                    f"allowed: {', '.join(self.intermediates)}",
                )
        for where in ("intermediates", "targets"):
            for name in getattr(self, where):
                for member in members_of(name, self.mixtures):  # a mixture: its tasks
                    task = self.task(member)
                    for stage in (*task.before, member):
                        before = f" (trained before {member!r})" if stage != member else ""
                        self._check_source(self.task(stage), where, before)
        return self

    def _check_source(self, task: Task, where: str, before: str) -> None:
        if self.data.source == "synthetic" and not task.synthetic:
            raise KeyProblem(
                (where, "data.source"),
                f"task {task.name!r}{before} has real data only (no synthetic version); "
                "set data.source: hub, or pick a task with a synthetic version",
            )
        if self.data.source == "hub" and not task.source:
            raise KeyProblem(
                (where, "data.source"),
                f"task {task.name!r}{before} exists only in the synthetic world; "
                "set data.source: synthetic, or pick a task with a real data set",
            )

    @model_validator(mode="after")
    def _lengths_fit_the_encoder(self) -> Experiment:
        # the synthetic encoder has position embeddings for model.max_length tokens only
        limit = self.model.max_length if self.encoder is None else 512
        for name, options in self.tasks.items():
            if options.max_length and options.max_length > limit:
                raise KeyProblem(
                    f"tasks.{name}.max_length",
                    f"exceeds the encoder's {limit} positions (model.max_length for the "
                    "synthetic encoder)",
                    options.max_length,
                )
        return self

    @model_validator(mode="after")
    def _encoder_matches_source(self) -> Experiment:
        if self.data.source == "hub" and self.encoder is None:
            raise KeyProblem(
                "encoder", "required with data.source: hub (e.g. FacebookAI/xlm-roberta-base)"
            )
        if self.data.source == "synthetic" and self.encoder is not None:
            raise KeyProblem(
                ("encoder", "data.source"),
                "a hub encoder cannot read the synthetic world (its own tokenizer is built "
                "there); remove encoder, or set data.source: hub",
                self.encoder.name,
            )
        return self

    @model_validator(mode="after")
    def _languages_exist(self) -> Experiment:
        if self.data.source == "hub":
            for lang in self.languages:
                if lang != "all" and lang not in XTREME_R_LANGUAGES:
                    close = difflib.get_close_matches(lang, XTREME_R_LANGUAGES, n=1)
                    hint = (
                        f"did you mean {close[0]!r}?"
                        if close
                        else "allowed: XTREME-R ISO codes or 'all'"
                    )
                    raise KeyProblem("languages", f"unknown language {lang!r}; {hint}")
            return self
        known = [lang.code for lang in self.world.languages]
        for lang in self.languages:
            if lang not in known:
                close = difflib.get_close_matches(lang, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(known)}"
                raise KeyProblem("languages", f"unknown language {lang!r}; {hint}")
        if "en" not in self.languages and self.languages != ("all",):
            raise KeyProblem(
                "languages", "must include 'en' (the source language)", list(self.languages)
            )
        return self

    @property
    def run_dir(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    def task(self, name: str) -> Task:
        """The registered task with this study's options applied, or a mixture as a task."""
        if name in self.mixtures:
            return mixture_task(name, [get_task(t) for t in self.mixtures[name].tasks])
        task = get_task(name)
        options = self.tasks.get(name)
        if options is None:
            return task
        fields = ("layer", "before", "noise")
        changes = {
            k: v for k, v in options.model_dump(include=set(fields)).items() if v is not None
        }
        return dataclasses.replace(task, **changes)

    def train_for(self, name: str) -> TrainConfig:
        """Fine-tuning settings of one task: the shared ones with the task's overrides."""
        options = self.tasks.get(name)
        if options is None or not options.train:
            return self.train
        return TrainConfig.model_validate({**self.train.model_dump(), **options.train})

    def max_length_for(self, name: str) -> int:
        options = self.tasks.get(name)
        return options.max_length if options and options.max_length else self.model.max_length

    def languages_of(self, task: Task) -> tuple[str, ...]:
        """The languages a target is evaluated on in this study."""
        if self.languages == ("all",):
            return task.languages
        if self.data.source == "hub":
            return tuple(lang for lang in self.languages if lang in task.languages)
        return task.evaluates(self.languages)

    def external_difficulty(self, name: str) -> float:
        return self.difficulty.external.get(name, math.nan)


def _registered(name: str, role: str | None, key: str | None = None) -> Task:
    """The registered task, else ValueError (a field's validator) or KeyProblem naming `key`."""
    try:
        return get_task(name, role)
    except KeyError as err:
        if key is None:
            raise ValueError(err.args[0]) from None
        raise KeyProblem(key, err.args[0]) from None


def one_line(err: ValidationError, source: Path | str) -> str:
    """First problem as 'file: dotted.key: message (got value)', then a count of the rest.

    Bounded: a value is quoted as a short excerpt, never whole (a 300 MB list stays one line)."""
    errors = err.errors()
    # a renamed key is both unknown and missing: its did-you-mean is the one that helps
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    rest = [e for e in errors if e is not first]
    loc = tuple(first["loc"])
    key = ".".join(_short_key(part) for part in loc) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")[:400]
    if first["type"] == "missing":
        message = "required"
    elif first["type"] == "extra_forbidden":
        message = f"unknown key{_did_you_mean(first['loc'])}"
    more = f" [+{len(rest)} more]" if rest else ""
    # a section's own check receives the whole section: never quoted whole; a KeyProblem
    # names its keys and the one value that is wrong
    quoted = first["type"] != "missing" and not isinstance(first["input"], dict)
    got = f" (got {excerpt(first['input'])})" if quoted else ""
    problem = (first.get("ctx") or {}).get("error")
    if isinstance(problem, KeyProblem):
        key = ", ".join(".".join(_short_key(p) for p in (*loc, k)) for k in problem.keys)
        got = f" (got {excerpt(problem.value[0])})" if problem.value else ""
    if first["loc"] == ("storage",):  # its message quotes it, and a URI may hold a secret
        got = ""
    return f"{source}: {key}: {message}{got}{more}"


def _short_key(part: object) -> str:
    text = str(part)
    return text if len(text) <= 64 and text.isprintable() else excerpt(text, 40)


def _did_you_mean(loc: tuple) -> str:
    """Suggest the closest allowed key for an unknown one."""
    model: Any = Experiment
    for part in loc[:-1]:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        model = field.annotation if field is not None else None
    allowed = list(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; allowed: {', '.join(allowed)}" if allowed else ""


def parse_config(raw: Any, source: Path | str = "<config>") -> Experiment:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the config must be a mapping of keys, got {type(raw).__name__}"
        )
    try:
        return Experiment.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(one_line(err, source)) from None


# Limits of a config file: far above any real study (configs/xtreme_r.yaml is 3 KB, 4 levels
# deep, no aliases), far below what hurts. Aliases are counted and the document's expanded size
# (aliases counted as often as they are used) is capped: an alias bomb is refused in milliseconds.
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 100_000


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no tags that build objects) that refuses duplicate keys, deep
    nesting, more than MAX_YAML_ALIASES aliases and documents that expand beyond MAX_YAML_NODES."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _limit(self, f"more than {MAX_YAML_ALIASES} aliases (*name)")
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _limit(self, f"nested deeper than {MAX_YAML_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if _expanded_size(node, {}, set()) > MAX_YAML_NODES:
            raise _limit(self, f"expands to more than {MAX_YAML_NODES:,} values through aliases")
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {excerpt(key, 40)} (lines {seen[key]} and {line}); "
                    "each key once",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep)


def _limit(loader: _LimitedLoader, problem: str) -> yaml.YAMLError:
    return yaml.composer.ComposerError(None, None, problem, loader.peek_event().start_mark)


def _expanded_size(node: Any, sizes: dict[int, int], active: set[int]) -> int:
    """Values in the document once every alias is replaced by what it names."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in active:  # `&a [*a]`: a document that contains itself never ends
        return MAX_YAML_NODES + 1
    active.add(id(node))
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes, active) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            size += _expanded_size(key, sizes, active) + _expanded_size(value, sizes, active)
    active.discard(id(node))
    sizes[id(node)] = min(size, MAX_YAML_NODES + 1)
    return sizes[id(node)]


def read_config_text(path: Path) -> str:
    """The text of a config file: a regular file of at most MAX_CONFIG_BYTES of UTF-8, else
    ConfigError. Never opens a FIFO or device (they block or never end)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is a folder; give the path of a YAML config file")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise ConfigError(f"{path}: is {kind}, not a regular file; give a YAML config file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {info.st_size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,} bytes"
        )
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:  # swapped for a FIFO after stat: still no block
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: more than {MAX_CONFIG_BYTES:,} bytes; too large for a config")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save the config as UTF-8"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{path}: contains NUL bytes (a binary file?); give a YAML config")
    return text


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> Experiment:
    """Read and validate a YAML config; `overrides` are merged before validation, never after."""
    path = Path(path)
    text = read_config_text(path)
    try:
        raw = yaml.load(text, Loader=_LimitedLoader)  # a SafeLoader subclass: no object tags
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = str(getattr(err, "problem", None) or err).strip().splitlines()
        raise ConfigError(
            f"{path}:{where} not valid YAML ({(problem or ['?'])[0][:200]})"
        ) from None
    except RecursionError:  # the limits above make this unreachable; kept as a last guard
        raise ConfigError(f"{path}: nested too deeply") from None
    if isinstance(raw, dict) and overrides:
        raw = {**raw, **overrides}
    return parse_config(raw, path)

"""Experiment configs: YAML validated into frozen pydantic models, every error one line.

Imports nothing heavy (no torch, no Ray): `itx plan` and config errors answer in under a second.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainers.settings import ModelConfig, PretrainConfig, TrainConfig
from trainers.tasks import TASKS, get_task
from trainers.world import WorldConfig


class ConfigError(ValueError):
    """A config that cannot run; the message is one line naming key, value and what is allowed."""


class DataSizes(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    train: int = Field(2000, ge=10)  # the same N for every intermediate: difficulty, not size
    dev: int = Field(500, ge=10)
    test: int = Field(500, ge=10)
    max_malformed: float = Field(
        0.01, ge=0, le=1
    )  # share of a split dropped as malformed before fatal


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

    @model_validator(mode="after")
    def _fits(self) -> Resources:
        if self.num_cpus is not None:
            for key in ("cpu", "pretrain_cpu"):
                if getattr(self, key) > self.num_cpus:
                    raise ValueError(
                        f"{key}={getattr(self, key)} exceeds num_cpus={self.num_cpus}: "
                        "no trial could ever be placed"
                    )
        return self


class Controls(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scratch: bool = True  # a random (never pretrained) encoder fine-tuned the same way


class AnalysisConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["statsmodels", "lme4"] = "statsmodels"  # lme4 runs R through Rscript


class Experiment(BaseModel):
    """One sweep: intermediate x seed x target on a pretrained encoder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a folder name, nothing more
    storage: str = "runs"  # root folder or URI; the run lives at <storage>/<name>
    world: WorldConfig = WorldConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()
    intermediates: tuple[str, ...] = Field(min_length=1)
    targets: tuple[str, ...] = Field(min_length=1)
    languages: tuple[str, ...] = Field(min_length=1)
    seeds: tuple[Annotated[int, Field(ge=0, lt=2**32)], ...] = Field(min_length=1)  # numpy's range
    data: DataSizes = DataSizes()
    train: TrainConfig = TrainConfig()
    controls: Controls = Controls()
    resources: Resources = Resources()
    analysis: AnalysisConfig = AnalysisConfig()

    @field_validator("name")
    @classmethod
    def _no_escape(cls, name: str) -> str:
        if ".." in name:
            raise ValueError("must not contain '..' (the run folder stays under storage)")
        return name

    @field_validator("intermediates", "targets", "languages", "seeds")
    @classmethod
    def _unique(cls, values: tuple) -> tuple:
        dupes = sorted({v for v in values if values.count(v) > 1}, key=str)
        if dupes:
            raise ValueError(f"duplicates {dupes}; list each once")
        return values

    @field_validator("intermediates")
    @classmethod
    def _known_intermediates(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if name in ("none", "scratch"):
                raise ValueError(f"{name!r} is added by itx (baseline/control); list tasks only")
            _registered(name, "intermediate")
        return names

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            _registered(name, "target")
        return names

    @model_validator(mode="after")
    def _languages_exist(self) -> Experiment:
        known = [lang.code for lang in self.world.languages]
        for lang in self.languages:
            if lang not in known:
                close = difflib.get_close_matches(lang, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(known)}"
                raise ValueError(f"languages: unknown language {lang!r}; {hint}")
        if "en" not in self.languages:
            raise ValueError("languages: must include 'en' (the source language)")
        return self

    @property
    def run_dir(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"


def _registered(name: str, role: str) -> None:
    try:
        get_task(name, role)
    except KeyError as err:
        raise ValueError(err.args[0]) from None


def one_line(err: ValidationError, source: Path | str) -> str:
    """First problem as 'file: dotted.key: message (got value)', then a count of the rest."""
    first, *rest = err.errors()
    key = ".".join(map(str, first["loc"])) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "required"
    elif first["type"] == "extra_forbidden":
        message = f"unknown key{_did_you_mean(first['loc'])}"
    more = f" [+{len(rest)} more]" if rest else ""
    got = f" (got {first['input']!r})" if first["type"] != "missing" else ""
    return f"{source}: {key}: {message}{got}{more}"


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


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> Experiment:
    """Read and validate a YAML config; `overrides` are merged before validation, never after."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{path}:{where} not valid YAML ({getattr(err, 'problem', err)})"
        ) from None
    if isinstance(raw, dict) and overrides:
        raw = {**raw, **overrides}
    return parse_config(raw, path)


def task_names(role: str) -> list[str]:
    return sorted(name for name, task in TASKS.items() if task.role == role)

"""`data.sources` as typed config: a user's override of trainers/sources.yaml entries, checked
when the experiment config is validated (unknown source names and keys, with did-you-mean),
before anything loads. Imports only pydantic and yaml (configs validate in under a second).

The dumped form is exactly what the user wrote (unset keys are left out), so an override
merges over its entry as before and a trial's identity does not change with this model.
"""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_serializer

SOURCES_FILE = Path(__file__).with_name("sources.yaml")


@functools.cache
def source_names() -> tuple[str, ...]:
    """The entries of trainers/sources.yaml."""
    with SOURCES_FILE.open(encoding="utf-8") as f:
        return tuple(yaml.safe_load(f) or {})


class Settings(BaseModel):
    """Settings of one split (trainers/sources.yaml's header documents each key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str | None = None
    name: str | None = None
    revision: str | None = None
    data_files: str | tuple[str, ...] | dict[str, str | tuple[str, ...]] | None = None
    split: str | None = None
    converter: str | None = None
    codes: dict[str, str] | None = None
    where: dict[str, str | int | float | bool] | None = None
    prefix: dict[str, str | int] | None = None
    tag_names: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    parallel_gold: bool | None = None
    cache_dir: str | None = None

    @model_serializer(mode="wrap")
    def _as_written(self, handler: Any) -> dict[str, Any]:
        """Only the keys the user set: an unset key must not override the entry."""
        dumped = handler(self)
        return {k: v for k, v in dumped.items() if k in self.model_fields_set}


class SourceOverride(Settings):
    """`data.sources.<name>`: settings for every split, per role, per language, per part."""

    train: Settings | None = None
    dev: Settings | None = None
    test: Settings | None = None
    pool: Settings | None = None
    langs: dict[str, Settings] | None = None
    parts: dict[str, SourceOverride] | None = None


def _did_you_mean(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"


def _allowed_at(loc: tuple) -> list[str]:
    """Keys allowed at the model that holds loc's last part."""
    model: Any = SourceOverride
    for part in loc[:-1]:
        if part in ("langs", "parts"):
            continue  # a mapping: the next part is a language or a part name
        if part in ("train", "dev", "test", "pool"):
            model = Settings
        elif part not in SourceOverride.model_fields:
            model = SourceOverride if model is SourceOverride else Settings
    return list(model.model_fields)


def parse_overrides(raw: Any) -> dict[str, SourceOverride]:
    """{source name: override}; ValueError with one line naming the first bad key."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a mapping of source names (got {raw!r})")
    names = source_names()
    out = {}
    for name, value in raw.items():
        if name not in names:
            raise ValueError(f"unknown source {name!r}; {_did_you_mean(str(name), list(names))}")
        if isinstance(value, SourceOverride):
            out[name] = value
            continue
        try:
            out[name] = SourceOverride.model_validate(value or {})
        except ValidationError as err:
            first = err.errors()[0]
            loc = tuple(str(p) for p in first["loc"])
            if first["type"] == "extra_forbidden":
                hint = _did_you_mean(loc[-1], _allowed_at(loc))
                where = ".".join((name, *loc[:-1]))
                raise ValueError(f"{where}: unknown key {loc[-1]!r}; {hint}") from None
            where = ".".join((name, *loc))
            raise ValueError(f"{where}: {first['msg']}") from None
    return out


def as_dicts(overrides: Any) -> dict[str, dict]:
    """Plain dicts (what trainers.sources merges) from typed overrides or raw mappings, each
    validated."""
    return {
        name: override.model_dump()
        for name, override in parse_overrides(dict(overrides or {})).items()
    }

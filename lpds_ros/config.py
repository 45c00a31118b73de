"""One way to load configs: typed dataclasses, YAML/JSON files, unknown keys rejected.

Every config in the project is a dataclass whose fields are documented where they are declared and
whose ``__post_init__`` rejects bad values by naming the field.  ``load_config`` is the only place a
file becomes a config, so a mistyped key in any YAML fails the same way everywhere.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lpds_ros.errors import LpdsError

T = TypeVar("T")


class ConfigError(LpdsError, ValueError):
    """A config file or value is wrong; the message is one line a user can act on."""


def config_from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build ``cls`` from a plain dict, rejecting keys the dataclass does not declare."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{source}: {exc}") from None


def read_config_file(path: str | Path) -> Any:
    """The parsed content of a YAML or JSON file (None when empty)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc.__class__.__name__})") from None


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read a YAML or JSON file into the dataclass ``cls``."""
    return config_from_dict(cls, read_config_file(path) or {}, source=str(path))


def config_to_dict(config: Any) -> dict[str, Any]:
    """The inverse of ``config_from_dict`` (tuples become lists, so the result is JSON/YAML-safe)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))

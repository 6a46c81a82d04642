"""Reading a study config: YAML to a validated :class:`StudyConfig`, and the one-line
wording of every error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from polytask.config.base import describe
from polytask.config.study import StudyConfig
from polytask.core.errors import ConfigError


def validate(raw: dict[str, Any], base: Path | None = None, *, source: str = "config") -> StudyConfig:
    """Build a :class:`StudyConfig` from plain data, turning validation errors into one line.

    Args:
        raw: the parsed YAML mapping.
        base: folder that relative data paths are resolved against.
        source: name used in messages (usually the config file's path).

    Raises:
        ConfigError: on any unknown key, wrong type or out-of-range value.
    """
    if raw is None:
        raise ConfigError(f"{source}: the config is empty; expected a mapping of config keys (name, tasks, strategies, ...)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys, got {type(raw).__name__}")
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {describe(e.errors()[0])}") from None
    return cfg.resolved(base) if base is not None else cfg


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a YAML study config; data paths are taken relative to it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the config as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())  # a reader error spans lines
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return validate(raw, path.parent.resolve(), source=str(path))

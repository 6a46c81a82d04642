"""Reading a study config: YAML to a validated :class:`StudyConfig`, and the one-line
wording of every error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from polytask.config.base import describe
from polytask.config.study import StudyConfig
from polytask.config.update import UpdateConfig
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


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """The parsed YAML of ``path``; one line for a missing file, text that is not UTF-8, or
    YAML that does not parse (``what`` names the file in the message)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file '{path}' does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the {what} as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())  # a reader error spans lines
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a YAML study config; data paths are taken relative to it."""
    path = Path(path)
    return validate(read_yaml(path), path.parent.resolve(), source=str(path))


def load_update_config(path: str | Path) -> UpdateConfig:
    """Read and validate ``polytask update``'s YAML (:class:`UpdateConfig`); data paths are
    relative to it."""
    path = Path(path)
    raw = read_yaml(path, "update config")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'tasks' (and optionally guard, gate, train, seed)")
    try:
        return UpdateConfig.model_validate(raw).resolved(path.parent.resolve())
    except ValidationError as e:
        raise ConfigError(f"{path}: {describe(e.errors()[0])}") from None

"""What every config section shares: frozen models that reject unknown keys, and the
one-line wording of a validation error."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

TaskKind = Literal["classification", "binary", "regression"]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def error_line(loc: str, msg: str, given: Any = None, show_given: bool = True) -> str:
    """One line for one problem: the field's path (none for the whole config), what was
    wrong, and the value given when it is worth showing."""
    shown = f" (got {given!r})" if show_given else ""
    return f"field '{loc}': {msg}{shown}" if loc else f"{msg}{shown}"


def describe(err: dict[str, Any]) -> str:
    """One line for the first pydantic error: where, what was wrong, what was expected."""
    loc = ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith("function-"))
    if err.get("type") == "extra_forbidden":
        parent, _, key = loc.rpartition(".")
        return f"unknown key '{key}'" + (f" in '{parent}'" if parent else " at top level")
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    given = err.get("input")
    return error_line(loc, msg, given, show_given=not (isinstance(given, dict) or err.get("type") == "missing"))

"""What every config section shares: frozen models that reject unknown keys, and the
one-line wording of a validation error."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_validator

TaskKind = Literal["classification", "binary", "regression"]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WithSections(BaseModel):
    """A frozen section whose extra keys are named sub-sections of a method's options
    (``mtl: {weighting: cagrad, cagrad: {c: 0.5}}``): each must be a mapping."""

    model_config = ConfigDict(extra="allow", frozen=True)
    # What a sub-section holds, in messages ("hyperparameters", "architecture options").
    section_kind: ClassVar[str] = "hyperparameters"

    @model_validator(mode="after")
    def _mapping_sections(self):
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, dict):
                raise ValueError(f"'{key}' must be a mapping of {self.section_kind}, got {value!r}")
        return self

    def hparams(self, name: str) -> dict:
        """The options given in sub-section ``name`` (empty: the method's defaults)."""
        return dict((self.model_extra or {}).get(name, {}))


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

"""Where a config's names meet the registries: backbones, architectures, builtin datasets,
weighting methods, fine-tuning regularizers, domain adaptation methods and validators,
pretrained sources and strategies.

:mod:`polytask.config` is the schema alone (types, ranges, structure); every name it holds
is a plain string until :func:`resolve` checks it here, one layer above both the schema and
the plugins. The errors read as the schema's do: one line, with the field's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from polytask import config as schema
from polytask.config import StudyConfig, error_line
from polytask.core.errors import ConfigError
from polytask.data.builtin import builtin_names
from polytask.methods.adaptation import ADAPTERS
from polytask.methods.adaptation.validators import validator_names
from polytask.methods.architectures.base import ARCHITECTURES, check_options
from polytask.methods.backbones import backbone_names, builder_options, check_name, is_pretrained, option_sections
from polytask.methods.finetuning.regularizers import regularizer_names
from polytask.methods.weighting import WEIGHTINGS, create, uses_rep_grad, weighting_names
from polytask.strategies import strategy_argument, strategy_names


class _Invalid(Exception):
    """One failed check: where (a field path, or '' for the whole config) and what."""

    def __init__(self, loc: str, msg: str, given: Any = None, show_given: bool = False):
        super().__init__(msg)
        self.loc, self.msg, self.given, self.show_given = loc, msg, given, show_given


def resolve(config: StudyConfig, source: str = "config") -> StudyConfig:
    """Check every name in ``config`` against the registries; return it unchanged.

    Raises:
        ConfigError: ``<source>: field '<path>': <what was wrong and what is known>``.
    """
    try:
        _check_tasks(config)
        _check_model(config.model)
        _check_fine_tune(config.fine_tune)
        _check_domain_adapt(config.domain_adapt)
        _check_mtl(config.mtl)
        _check_sources(config.sources)
        _check_strategies(config)
        _check_rep_grad(config)
    except _Invalid as e:
        raise ConfigError(f"{source}: {error_line(e.loc, e.msg, e.given, e.show_given)}") from None
    return config


def validate(raw: dict[str, Any], base: Path | None = None, *, source: str = "config") -> StudyConfig:
    """:func:`polytask.config.validate` (the schema), then :func:`resolve` (the names)."""
    return resolve(schema.validate(raw, base, source=source), source)


def load_config(path: str | Path) -> StudyConfig:
    """:func:`polytask.config.load_config` (the YAML and the schema), then :func:`resolve`."""
    return resolve(schema.load_config(path), str(path))


def argument_choices(config: StudyConfig, kind: str | None) -> list[str]:
    """What may follow ``<strategy>:`` for a strategy whose argument is ``kind``."""
    if kind == "weighting":
        return weighting_names()
    if kind == "source":
        return [*(n for n in backbone_names() if is_pretrained(n)), *config.sources]
    if kind == "method":
        return [*ADAPTERS.names(), "source-only"]
    return []


def _check_tasks(config: StudyConfig) -> None:
    for name, task in config.tasks.items():
        for key in ("data", "unlabeled"):
            data = getattr(task, key)
            if isinstance(data, schema.DataConfig) and data.builtin is not None and data.builtin not in builtin_names():
                raise _Invalid(f"tasks.{name}.{key}", f"unknown builtin dataset '{data.builtin}' (known: {', '.join(builtin_names())})")


def backbone_options(model: schema.ModelConfig, name: str | None = None) -> dict[str, Any]:
    """The keyword options backbone ``name`` (default ``model.backbone``) is built with: the
    entries of the model-config sections it reads (:func:`option_sections`), e.g.
    ``model.gru`` and ``model.text`` for ``gru``; a user's backbone ``foo`` reads ``model.foo``."""
    options: dict[str, Any] = {}
    for section in option_sections(name or model.backbone):
        value = getattr(model, section) if section in type(model).model_fields else (model.model_extra or {}).get(section, {})
        options.update(value.model_dump() if isinstance(value, BaseModel) else value)
    return options


def _check_model(model: schema.ModelConfig) -> None:
    if ":" in model.backbone:
        try:
            check_name(model.backbone)
        except ValueError as e:
            raise _Invalid("model.backbone", str(e), model.backbone, show_given=True) from None
    elif model.backbone not in backbone_names():
        known = ", ".join(backbone_names())
        raise _Invalid("model.backbone", f"unknown backbone '{model.backbone}' (known: {known}, or hf:<name>, timm:<name>, run:<path>)", model.backbone, True)
    extra = model.model_extra or {}
    for key in [model.architecture, *extra]:
        if key not in ARCHITECTURES and key not in option_sections(model.backbone):
            raise _Invalid("model", f"unknown key or architecture '{key}' (architectures: {', '.join(ARCHITECTURES.names())})")
    for key, options in extra.items():
        if not isinstance(options, dict):
            raise _Invalid("model", f"'{key}' must be a mapping of architecture options, got {options!r}")
        if key not in ARCHITECTURES:  # the options of the user's backbone
            known = builder_options(model.backbone)
            unknown = [k for k in options if known is not None and k not in known]
            if unknown:
                raise _Invalid(f"model.{key}", f"backbone '{model.backbone}' takes no option '{unknown[0]}' (it takes: {', '.join(known) or 'none'})")
            continue
        try:
            check_options(key, options)
        except ValueError as e:
            raise _Invalid("model", str(e)) from None


def _check_fine_tune(cfg: schema.FineTuneConfig) -> None:
    names = regularizer_names()
    for key in [*([cfg.regularizer] if cfg.regularizer else []), *(cfg.model_extra or {})]:
        if key not in names:
            raise _Invalid("fine-tune", f"unknown fine-tuning regularizer or key '{key}' (regularizers: {', '.join(names)})")


def _check_domain_adapt(cfg: schema.DomainAdaptConfig) -> None:
    if cfg.validator not in validator_names():
        raise _Invalid("domain-adapt", f"unknown validator '{cfg.validator}' (known: {', '.join(validator_names())})")
    for key in cfg.model_extra or {}:
        if key not in ADAPTERS:
            raise _Invalid("domain-adapt", f"unknown domain adaptation method '{key}' (known: {', '.join(ADAPTERS.names())})")


def _check_mtl(cfg: schema.MTLConfig) -> None:
    names = weighting_names()
    for key in [cfg.weighting, *(cfg.model_extra or {})]:
        if key not in names:
            raise _Invalid("mtl", f"unknown weighting method '{key}' (known: {', '.join(names)})")
    for key, hp in (cfg.model_extra or {}).items():
        # Per-task vectors (static weights, preference vectors) fix the number of tasks to check with.
        n_tasks = next((len(v) for v in hp.values() if isinstance(v, list | tuple)), 2)
        try:
            create(key, n_tasks, **hp)
        except (TypeError, ValueError) as e:
            raise _Invalid("mtl", f"hyperparameters of '{key}': {e}") from None


def _check_sources(sources: dict[str, Any]) -> None:
    for alias, spec in sources.items():
        if not isinstance(spec, str):
            continue  # learned without labels inside the study (SSLSourceConfig)
        if ":" in spec:
            try:
                check_name(spec, where=f"sources.{alias}")
            except ValueError as e:
                raise _Invalid("sources", str(e)) from None
        elif spec not in backbone_names() or not is_pretrained(spec):
            raise _Invalid("sources", f"sources.{alias}: '{spec}' is not a pretrained backbone (use efficientnet-lite0, minilm, hf:, timm: or run:)")


def _check_strategies(config: StudyConfig) -> None:
    names = strategy_names()
    for s in config.strategies:
        base, _, arg = s.partition(":")
        choices = argument_choices(config, strategy_argument(base)) if base in names else []
        if base not in names or (arg and arg not in choices):
            forms = [f"{n}:<{strategy_argument(n)}>" for n in names if strategy_argument(n)]
            hint = f"; '{base}:' takes one of: {', '.join(choices)}" if base in names and choices else ""
            raise _Invalid("", f"field 'strategies': unknown strategy '{s}' (known: {', '.join([*names, *forms])}){hint}")


def _check_rep_grad(config: StudyConfig) -> None:
    """Refuse the combinations where gradients of the representation mean nothing."""
    for s in config.strategies:
        method = config.mtl_method(s)
        if method is None or not uses_rep_grad(method, config.mtl.rep_grad):
            continue
        if not WEIGHTINGS[method].requires_grads:
            raise _Invalid(
                "",
                f"strategy '{s}' with mtl.rep_grad: '{method}' weights the losses and never reads gradients, "
                "so balancing them on the representation changes nothing; use a gradient method or drop rep_grad",
            )
        if config.model.architecture != "hard":
            raise _Invalid(
                "",
                f"strategy '{s}' balances gradients of the one representation every head reads, but architecture "
                f"'{config.model.architecture}' gives each task its own; use architecture 'hard' or a method on parameters",
            )
        if config.mtl.sampling != "uniform":
            raise _Invalid(
                "",
                f"strategy '{s}': with gradients on the representation every task shares each batch, "
                f"so mtl.sampling '{config.mtl.sampling}' cannot apply; use sampling 'uniform'",
            )

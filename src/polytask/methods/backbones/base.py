"""Backbones: the shared layers, mapping an input batch to a feature vector.

Every backbone exposes ``out_features``. Three registries hold the builders, each called
with plain keyword options (the model config's sections are the study's business):

- :data:`BACKBONES`: ``fn(input_shape, **options)``, architectures trained from scratch
  (``mlp``, ``cnn``, ``gru``);
- :data:`PRETRAINED`: ``fn(input_shape, pretrained, **options)``, named backbones that
  have pretrained weights (``efficientnet-lite0``, ``minilm``);
- :data:`PREFIXES`: ``fn(spec, input_shape, pretrained, **options)`` for ``prefix:spec``
  names (``hf:``, ``timm:``, ``run:``, ``module:``).

Users may also pass their own ``nn.Module`` (see :func:`from_user_module`).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.registry import Registry

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")
PRETRAINED: Registry[Callable[..., nn.Module]] = Registry("pretrained backbone")
PREFIXES: Registry[Callable[..., nn.Module]] = Registry("backbone prefix")

# Keyword options a study fills from the data, never from the model config: ``embeddings``,
# the ``(levels + 1, dim)`` of a table's code columns (see polytask.study.models), passed to
# a builder that takes it (``mlp``) for inputs with code columns.
DATA_OPTIONS = ("embeddings",)


def register_backbone(name: str, *, options: tuple[str, ...] | None = None):
    """Decorator registering ``fn(input_shape, **options) -> nn.Module``; duplicates raise.

    Args:
        name: the name a config's ``model.backbone`` uses.
        options: the model-config sections whose entries a study passes to ``fn`` as
            keyword arguments (default: the section named like the backbone, so a
            backbone ``foo`` reads ``model: {foo: {...}}``).
    """
    return BACKBONES.register(name, options=(name,) if options is None else tuple(options))


def register_pretrained(name: str, *, options: tuple[str, ...] = ()):
    """Decorator registering ``fn(input_shape, pretrained, **options)``, a backbone with
    pretrained weights, under ``name``; ``options`` as for :func:`register_backbone`."""
    return PRETRAINED.register(name, options=tuple(options))


def register_prefix(prefix: str, *, options: tuple[str, ...] = ()):
    """Decorator registering ``fn(spec, input_shape, pretrained, **options)`` for backbone
    names ``<prefix>:<spec>``; ``options`` as for :func:`register_backbone`."""
    return PREFIXES.register(prefix, options=tuple(options))


def is_pretrained(name: str) -> bool:
    """Whether backbone ``name`` has pretrained weights (a named one or a prefix)."""
    return name in PRETRAINED or name.partition(":")[0] in PREFIXES and ":" in name


def option_sections(name: str) -> tuple[str, ...]:
    """The model-config sections whose entries backbone ``name`` takes as options."""
    prefix, sep, _ = name.partition(":")
    for registry, key in ((PREFIXES, prefix if sep else None), (PRETRAINED, name), (BACKBONES, name)):
        if key in registry:
            return registry.info[key]["options"]
    return (name,)


def backbone_names() -> list[str]:
    """Registered backbone names, those with pretrained weights included."""
    return [*BACKBONES.names(), *PRETRAINED.names()]


def create_backbone(name: str, input_shape: tuple[int, ...], pretrained: bool = False, **options) -> nn.Module:
    """Build backbone ``name`` for inputs of ``input_shape`` (one sample).

    Args:
        name: a registered name, or ``hf:``/``timm:``/``run:``/``module:``.
        pretrained: load the backbone's pretrained weights; otherwise its architecture
            is randomly initialized.
        **options: the builder's keyword options (``hidden=[64]``, ``dropout=0.0`` for
            ``mlp``); a study passes the model config's sections that
            :func:`option_sections` names.

    Raises:
        ConfigError: unknown name, inputs the backbone cannot read, or pretrained
            weights asked of a backbone that has none.
    """
    prefix, sep, spec = name.partition(":")
    if sep and prefix in PREFIXES:
        return PREFIXES[prefix](spec, tuple(input_shape), pretrained, **options)
    if name in PRETRAINED:
        return PRETRAINED[name](tuple(input_shape), pretrained, **options)
    if pretrained:
        known = ", ".join(n for n in backbone_names() if is_pretrained(n))
        raise ConfigError(f"backbone '{name}' has no pretrained weights (pretrained ones: {known}, hf:, timm:, run:)")
    return BACKBONES.get_item(name)(tuple(input_shape), **options)


def check_name(name: str, where: str = "model.backbone", allow_module: bool = False) -> None:
    """Reject an unusable pretrained-backbone name before any run (no loading).

    Raises:
        ValueError: unknown prefix, empty spec, ``module:`` from a config file, or a
            malformed ``run:`` path.
    """
    prefix, sep, spec = name.partition(":")
    if not sep:
        return
    if prefix not in PREFIXES:
        raise ValueError(f"{where}: unknown backbone prefix '{prefix}:' in '{name}' (known: {', '.join(p + ':' for p in PREFIXES)})")
    if not spec:
        raise ValueError(f"{where}: '{name}' names nothing after '{prefix}:'")
    if prefix == "module" and not allow_module:
        raise ValueError(f"{where}: '{name}' would import and run code named in a config file; pass it from Python: Study(config, backbone='{name}')")
    if prefix == "module" and not re.fullmatch(r"[\w.]+:\w+", spec):
        raise ValueError(f"{where}: '{name}' must look like module:package.module:callable")
    if prefix == "run" and (not re.search(r"/seed\d+$", spec) or len(Path(spec).parts) < 3):
        raise ValueError(f"{where}: '{name}' must end in /seed<k>: run:<study-dir>/<task>/<strategy>/seed<k>")


def builder_options(name: str) -> list[str] | None:
    """The keyword options backbone ``name``'s builder takes (None: any, it has ``**kwargs``)."""
    prefix, sep, _ = name.partition(":")
    fn = PREFIXES.get(prefix) if sep else PRETRAINED.get(name) or BACKBONES.get(name)
    if fn is None:
        return []
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.default is not p.empty or p.kind is p.KEYWORD_ONLY]


def need_package(module: str, extra: str, what: str):
    """Import ``module``, or say which extra of polytask installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{what} needs the '{module}' package ({e}); install it with: pip install 'polytask[{extra}]'") from None


def from_user_module(module: nn.Module | Callable[[], nn.Module], input_shape: tuple[int, ...]) -> nn.Module:
    """A fresh backbone from a user's module or a zero-argument factory.

    A module instance is deep-copied and its parameters re-initialized (every submodule
    with ``reset_parameters``), so each run starts from its own seeded initialization.
    ``out_features`` is read from the module or found by one forward pass.
    """
    if isinstance(module, nn.Module):
        net = copy.deepcopy(module)
        for m in net.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    else:
        net = module()
        if not isinstance(net, nn.Module):
            raise ConfigError(f"backbone factory returned {type(net).__name__}; expected a torch.nn.Module")
    if not hasattr(net, "out_features") or not isinstance(net.out_features, int):
        was = net.training
        net.eval()
        with torch.no_grad():
            out = net(torch.zeros(2, *input_shape))
        net.train(was)
        if out.ndim != 2:
            raise ConfigError(f"user backbone returns shape {tuple(out.shape)} for a batch; expected (batch, features)")
        net.out_features = int(out.shape[1])
    return net

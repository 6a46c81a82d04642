"""Multi-task sharing architectures, by name: how tasks share layers in the ``mtl`` strategy.

``hard`` is here; the others register themselves in :mod:`polytask.methods.architectures.stagewise`
(cross-stitch, MTAN) and :mod:`polytask.methods.architectures.experts` (MMoE, CGC, PLE, DSelect-k),
which the ``polytask.methods.architectures`` package imports.

Every builder takes ``(new_backbone, input_shape, tasks, **options)`` where
``new_backbone()`` returns a freshly initialized backbone (the config's or the user's
module), and returns a model with ``forward(x, task)``, per-task ``heads`` and
``shared_parameters()`` (what gradient-balancing methods take per-task gradients of).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.registry import Registry
from polytask.core.tasks import Task
from polytask.methods.architectures.multitask import MultiTaskModel

Builder = Callable[..., nn.Module]
ARCHITECTURES: Registry[Builder] = Registry("architecture")


def register_architecture(name: str):
    """Decorator registering a sharing architecture under ``name``; a duplicate name raises."""
    return ARCHITECTURES.register(name)


@register_architecture("hard")
def build_hard(new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task]) -> nn.Module:
    """Hard parameter sharing: one backbone, a linear head per task."""
    return MultiTaskModel(new_backbone(), tasks)


def architecture_options(name: str) -> list[str]:
    """Keyword options the architecture ``name`` accepts."""
    params = inspect.signature(ARCHITECTURES.get_item(name)).parameters
    return [p for p in params if p not in ("new_backbone", "input_shape", "tasks")]


def check_options(name: str, options: dict) -> None:
    """Raise ``ValueError`` naming an option the architecture does not take."""
    known = architecture_options(name)
    for key in options:
        if key not in known:
            raise ValueError(f"architecture '{name}' has no option '{key}' (known: {', '.join(known) or 'none'})")


def build_multitask_model(name: str, new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], **options) -> nn.Module:
    """The registered architecture ``name`` over ``tasks``."""
    try:
        check_options(name, options)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return ARCHITECTURES.get_item(name)(new_backbone, tuple(input_shape), tasks, **options)

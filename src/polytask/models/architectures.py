"""Multi-task sharing architectures, by name: how tasks share layers in the ``mtl`` strategy.

Every builder takes ``(new_backbone, input_shape, tasks, **options)`` where
``new_backbone()`` returns a freshly initialized backbone (the config's or the user's
module), and returns a model with ``forward(x, task)``, per-task ``heads`` and
``shared_parameters()`` (what gradient-balancing methods take per-task gradients of).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from polytask.errors import ConfigError
from polytask.models.multitask import MultiTaskModel
from polytask.registry import Registry
from polytask.tasks import Task

Builder = Callable[..., nn.Module]
ARCHITECTURES: Registry[Builder] = Registry("architecture")


@ARCHITECTURES.register("hard")
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


def _register_builtin_architectures() -> None:
    from polytask.models import experts, stagewise

    for name, builder in {
        "cross-stitch": stagewise.build_cross_stitch,
        "mmoe": experts.build_mmoe,
        "cgc": experts.build_cgc,
        "ple": experts.build_ple,
        "dselect-k": experts.build_dselect_k,
        "mtan": stagewise.build_mtan,
    }.items():
        ARCHITECTURES.register(name)(builder)


_register_builtin_architectures()

"""CGC, Customized Gate Control (Tang et al., 2020): a single-level PLE; registered as ``cgc``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from polytask.core.tasks import Task
from polytask.methods.architectures.base import register_architecture
from polytask.methods.architectures.extraction import CGC

__all__ = ["build_cgc"]


@register_architecture("cgc")
def build_cgc(
    new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], shared_experts: int = 2, task_experts: int = 1
) -> nn.Module:
    """Customized Gate Control (Tang et al., 2020): see :class:`CGC`."""
    return CGC(new_backbone, tuple(input_shape), tasks, shared_experts, task_experts)

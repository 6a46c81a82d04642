"""PLE, Progressive Layered Extraction (Tang et al., 2020): stacked extraction layers of
shared and task-specific experts; registered as ``ple``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from polytask.core.tasks import Task
from polytask.methods.architectures.base import register_architecture
from polytask.methods.architectures.extraction import PLE

__all__ = ["build_ple"]


@register_architecture("ple")
def build_ple(
    new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], shared_experts: int = 2, task_experts: int = 1, levels: int = 2
) -> nn.Module:
    """Progressive Layered Extraction (Tang et al., 2020): see :class:`PLE`."""
    return PLE(new_backbone, tuple(input_shape), tasks, shared_experts, task_experts, levels)

"""MMoE (Ma et al., 2018, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts", KDD): shared experts, a softmax gate per task; registered
as ``mmoe``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from polytask.core.tasks import Task
from polytask.methods.architectures.base import register_architecture
from polytask.methods.architectures.experts import SoftmaxGate, _check_count, _make_experts, _mix, _width

__all__ = ["MMoE", "build_mmoe"]


class MMoE(nn.Module):
    """Multi-gate Mixture-of-Experts (Ma et al., 2018).

    ``E`` experts ``f_e`` are shared by all tasks; task ``t`` has its own gate
    ``g_t(x) = softmax(W_t x)`` over the experts on the flattened input ``x``, and its
    representation is ``h_t(x) = sum_e g_te(x) f_e(x)``, fed to the task's linear head.

    Args:
        new_backbone: returns a freshly initialized expert with ``out_features``.
        input_shape: shape of one input sample (the gates read it flattened).
        tasks: the tasks; one gate and one head each.
        experts: number of shared experts ``E``.
    """

    def __init__(self, new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], experts: int = 4):
        super().__init__()
        _check_count("experts", experts, 1)
        self.experts = _make_experts(new_backbone, experts)
        self.out_features = _width(self.experts)
        self.gates = nn.ModuleDict({t.name: self._new_gate(math.prod(input_shape), experts) for t in tasks})
        self.heads = nn.ModuleDict({t.name: nn.Linear(self.out_features, t.n_outputs) for t in tasks})

    def _new_gate(self, in_features: int, n_experts: int) -> nn.Module:
        return SoftmaxGate(in_features, n_experts)

    def gate(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """Task ``task``'s expert weights ``(batch, E)`` for input ``x``."""
        return self.gates[task](x).expand(x.shape[0], len(self.experts))

    def representation(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """``h_t(x) = sum_e g_te(x) f_e(x)``, shape ``(batch, out_features)``."""
        return _mix(self.gate(x, task), [e(x) for e in self.experts])

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return self.heads[task](self.representation(x, task))

    def shared_parameters(self) -> list[nn.Parameter]:
        """The experts' parameters: every task mixes every expert (gates and heads are per task)."""
        return list(self.experts.parameters())


@register_architecture("mmoe")
def build_mmoe(new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], experts: int = 4) -> nn.Module:
    """Multi-gate Mixture-of-Experts (Ma et al., 2018): see :class:`MMoE`."""
    return MMoE(new_backbone, tuple(input_shape), tasks, experts)

"""Multi-task sharing architectures built from expert networks (mixtures of experts).

Every builder takes ``(new_backbone, input_shape, tasks, **options)``: ``new_backbone()``
returns a freshly initialized expert (the config's ``mlp``/``cnn`` or the user's module)
mapping a batch to ``(batch, out_features)``. Each model returned has

* ``forward(x, task_name)``: the task head's output,
* ``heads``: ``nn.ModuleDict({task: nn.Linear(out_features, n_outputs)})``,
* ``shared_parameters()``: the parameters more than one task's output depends on
  (what gradient-balancing methods take per-task gradients of),
* ``out_features``: the width ``d`` of the task representations fed to the heads.

Architectures:

* MMoE (Ma et al., 2018, "Modeling Task Relationships in Multi-task Learning with
  Multi-gate Mixture-of-Experts", KDD): shared experts, a softmax gate per task.
* CGC and PLE (Tang et al., 2020, "Progressive Layered Extraction (PLE): A Novel
  Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys): shared plus
  task-specific experts, stacked into ``levels`` extraction layers.
* DSelect-k (Hazimeh et al., 2021, "DSelect-k: Differentiable Selection in the Mixture
  of Experts with Applications to Multi-Task Learning", NeurIPS): MMoE whose gates
  select at most ``k`` experts through smooth binary encodings.

All gates on the input read the raw flattened input, as in the papers; gates are linear
without bias (``softmax(W x)``), as the papers write them. ``forward(x, task)`` evaluates
only what that task needs, so the cost of one call is one pass through the experts the
task's output depends on.

The architectures share the pieces in this module (building and checking experts, mixing
their outputs, the softmax gate); each has a module of its own that registers its builder:
``mmoe``, ``cgc``, ``ple`` and ``dselect_k`` in :mod:`polytask.methods.architectures`,
with the models of CGC and PLE in :mod:`polytask.methods.architectures.extraction`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from polytask.core.errors import ConfigError

__all__ = ["SoftmaxGate"]


def _make_experts(new_backbone: Callable[[], nn.Module], n: int) -> nn.ModuleList:
    """``n`` fresh experts, checked to share one integer ``out_features``."""
    experts = nn.ModuleList(new_backbone() for _ in range(n))
    widths = {getattr(e, "out_features", None) for e in experts}
    if any(not isinstance(w, int) for w in widths):
        raise ConfigError("every expert needs an integer attribute 'out_features' (see polytask.methods.backbones.from_user_module)")
    if len(widths) > 1:
        raise ConfigError(f"experts must all have the same out_features, got {sorted(widths)}")
    return experts


def _width(experts: nn.ModuleList) -> int:
    return int(experts[0].out_features)


def _check_count(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or value < minimum:
        raise ConfigError(f"option '{name}' must be an integer >= {minimum}, got {value!r}")


def _mix(weights: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    """``sum_e weights[:, e] * outputs[e]``: ``(batch, E)`` weights over ``E`` outputs ``(batch, d)``."""
    return torch.einsum("be,bed->bd", weights, torch.stack(outputs, dim=1))


class SoftmaxGate(nn.Module):
    """Softmax gate ``g(x) = softmax(W x)`` over ``n_experts`` (MMoE eq. 5, PLE eq. 3).

    Args:
        in_features: width of the (flattened) gate input.
        n_experts: number of experts the gate mixes.
    """

    def __init__(self, in_features: int, n_experts: int):
        super().__init__()
        self.linear = nn.Linear(in_features, n_experts, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weights ``(batch, n_experts)``, non-negative, summing to 1 per sample."""
        return torch.softmax(self.linear(x.flatten(1).to(self.linear.weight.dtype)), dim=-1)

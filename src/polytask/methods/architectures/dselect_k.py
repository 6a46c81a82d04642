"""DSelect-k (Hazimeh et al., 2021, "DSelect-k: Differentiable Selection in the Mixture of
Experts with Applications to Multi-Task Learning", NeurIPS): MMoE whose gates select at
most ``k`` experts through smooth binary encodings; registered as ``dselect-k``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.tasks import Task
from polytask.methods.architectures.base import register_architecture
from polytask.methods.architectures.experts import _check_count
from polytask.methods.architectures.mmoe import MMoE

__all__ = ["DSelectK", "DSelectKGate", "build_dselect_k", "smooth_step"]


def smooth_step(t: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Cubic smooth-step of DSelect-k (Hazimeh et al., 2021, eq. 3).

    ``S(t) = 0`` for ``t <= -gamma/2``, ``1`` for ``t >= gamma/2``, otherwise
    ``-2/gamma^3 t^3 + 3/(2 gamma) t + 1/2``. It is continuously differentiable and,
    unlike a sigmoid, reaches exactly 0 and 1, so a selector can make an exact choice.
    """
    cubic = -2.0 / gamma**3 * t**3 + 3.0 / (2.0 * gamma) * t + 0.5
    return torch.where(t <= -gamma / 2, torch.zeros_like(t), torch.where(t >= gamma / 2, torch.ones_like(t), cubic))


class DSelectKGate(nn.Module):
    """Static DSelect-k gate: a distribution over ``n_experts`` with at most ``k`` non-zeros at convergence.

    Each of the ``k`` single-expert selectors has ``m = ceil(log2 E)`` logits ``z`` and
    puts mass ``r(z)_i = prod_j (bit_j(i) ? S(z_j) : 1 - S(z_j))`` on expert code ``i``
    (a distribution over ``2^m`` codes; one-hot once every ``S(z_j)`` is 0 or 1). The gate
    is ``q = sum_k softmax(w)_k r(z^(k))`` (Hazimeh et al., 2021, eq. 5 and 6).

    This is the static (input-independent) variant of the paper: ``z`` and ``w`` are
    parameters, so the gate returns the same weights for every sample.

    When ``E`` is not a power of two, codes ``i >= E`` are folded onto expert ``i - E``:
    the gate then stays an exact distribution over the ``E`` experts and a saturated
    selector still picks a single expert. (The reference implementation instead drops
    those codes, so its weights can sum to less than 1.)

    Args:
        n_experts: number of experts ``E``.
        k: number of selectors (at most ``k`` experts selected).
        gamma: width of the smooth-step's transition region.
    """

    def __init__(self, n_experts: int, k: int, gamma: float):
        super().__init__()
        self.n_experts, self.k, self.gamma = n_experts, k, gamma
        # At least one bit, so a one-expert gate still has a (harmless) parameter shape.
        m = max(1, math.ceil(math.log2(n_experts)))
        codes = torch.arange(2**m)
        self.register_buffer("bits", ((codes[:, None] >> torch.arange(m)) & 1).bool(), persistent=False)
        self.register_buffer("fold", codes % n_experts, persistent=False)
        # The paper's initialisation: small uniform logits, so every S(z) starts near 1/2
        # (all experts weighted, gradients flowing) rather than saturated.
        self.z = nn.Parameter(torch.empty(k, m).uniform_(-gamma / 100, gamma / 100))
        self.w = nn.Parameter(torch.empty(k).uniform_(-gamma / 100, gamma / 100))

    def selector_distributions(self) -> torch.Tensor:
        """``r(z^(k))`` for every selector over the ``2^m`` codes, shape ``(k, 2^m)``."""
        s = smooth_step(self.z, self.gamma)[:, None, :]  # (k, 1, m)
        return torch.where(self.bits[None], s, 1 - s).prod(dim=-1)

    def weights(self) -> torch.Tensor:
        """The gate ``q``: ``(E,)``, non-negative, summing to 1."""
        r = self.selector_distributions()
        per_expert = torch.zeros(self.k, self.n_experts, dtype=r.dtype, device=r.device).index_add(1, self.fold, r)
        return (torch.softmax(self.w, dim=0)[:, None] * per_expert).sum(dim=0)

    def entropy(self) -> torch.Tensor:
        """``sum_k H(r(z^(k)))``: the paper's optional regulariser pushing selectors to binary choices."""
        r = self.selector_distributions()
        # Clamp inside the log only: at r = 0 the term is 0 and its gradient stays finite.
        return -(r * torch.log(r.clamp_min(1e-12))).sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same weights for every sample of ``x``: ``(batch, E)``."""
        return self.weights()[None].expand(x.shape[0], self.n_experts)


class DSelectK(MMoE):
    """MMoE with static DSelect-k gates (Hazimeh et al., 2021).

    Task ``t``'s representation is ``h_t(x) = sum_e q_te f_e(x)`` with ``q_t`` a
    :class:`DSelectKGate`; at convergence at most ``k`` experts have non-zero weight, so
    each task ends up using a sparse, learned subset of the shared experts.

    The entropy regulariser of the paper is not added to any loss here; call
    :meth:`entropy_regularization` and add ``lambda * value`` to a loss to use it.

    Args:
        new_backbone: returns a freshly initialized expert with ``out_features``.
        input_shape: shape of one input sample (unused by the static gates).
        tasks: the tasks; one gate and one head each.
        experts: number of shared experts ``E``.
        k: selectors per gate (at most ``k`` experts per task), ``1 <= k <= E``.
        gamma: smooth-step transition width.
    """

    def __init__(
        self, new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], experts: int = 4, k: int = 2, gamma: float = 1.0
    ):
        _check_count("k", k, 1)
        if k > experts:
            raise ConfigError(f"DSelect-k needs k <= experts, got k={k} experts={experts}")
        if not gamma > 0:
            raise ConfigError(f"option 'gamma' must be > 0, got {gamma!r}")
        self.k, self.gamma = k, float(gamma)
        super().__init__(new_backbone, input_shape, tasks, experts)

    def _new_gate(self, in_features: int, n_experts: int) -> nn.Module:
        return DSelectKGate(n_experts, self.k, self.gamma)

    def entropy_regularization(self) -> torch.Tensor:
        """``sum_t sum_k H(r(z^(t,k)))`` over all tasks' selectors (0 once all are binary)."""
        return torch.stack([g.entropy() for g in self.gates.values()]).sum()


@register_architecture("dselect-k")
def build_dselect_k(
    new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], experts: int = 4, k: int = 2, gamma: float = 1.0
) -> nn.Module:
    """MMoE with static DSelect-k gates (Hazimeh et al., 2021): see :class:`DSelectK`."""
    return DSelectK(new_backbone, tuple(input_shape), tasks, experts, k, gamma)

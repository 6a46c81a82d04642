"""``l2-sp``: L2-SP (Li, Grandvalet & Davoine, ICML 2018), a pull of the backbone towards
its pretrained weights plus weight decay of the new parameters."""

from __future__ import annotations

import torch
from torch import nn

from polytask.methods.finetuning.regularizers.base import (
    Penalty,
    _check_nonnegative,
    _check_reference,
    _half_sq_norm,
    _new_parameters,
    _reference_of,
    register_regularizer,
)

__all__ = ["L2SP"]


@register_regularizer("l2-sp")
class L2SP(Penalty):
    """L2-SP (Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with
    Convolutional Networks", ICML 2018), Eq. 3:

    ``Ω(w) = α/2 · ||w_S − w_S⁰||² + β/2 · ||w_S̄||²``

    where ``w_S`` are the backbone parameters that have a pretrained value ``w_S⁰`` (matched
    by name in ``start.backbone``) and ``w_S̄`` the rest: the new heads, and backbone
    parameters with no pretrained counterpart (e.g. adapters). Buffers (BatchNorm
    statistics) are not regularized.

    Args:
        start: the pretrained model; only ``start.backbone`` is read.
        alpha: strength of the pull towards the starting point (default 0.1).
        beta: weight decay of the new parameters (default 0.01).
    """

    def __init__(self, start: nn.Module | None, alpha: float = 0.1, beta: float = 0.01):
        _check_nonnegative(alpha=alpha, beta=beta)
        _reference_of(start, "l2-sp")
        super().__init__(start)
        self.alpha, self.beta = alpha, beta

    def attach(self, model: nn.Module) -> L2SP:
        super().attach(model)
        _check_reference(model, dict(self.start.backbone.named_parameters()), "l2-sp")
        return self

    def forward(self, model: nn.Module, x: torch.Tensor, task: str, y: torch.Tensor | None = None) -> torch.Tensor:
        reference = dict(self.start.backbone.named_parameters())
        current = dict(model.backbone.named_parameters())
        sp = 0.5 * sum((current[n] - w0).pow(2).sum() for n, w0 in reference.items())
        return self.alpha * sp + self.beta * _half_sq_norm(_new_parameters(model, reference), x)

"""``ewc``: Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from polytask.methods.finetuning.regularizers.base import Penalty, _check_nonnegative

# One sample's negative log-likelihood: ``nll(model, x[None], y[None]) -> scalar``.
NLL = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def fisher_diagonal(model: nn.Module, samples: Iterable[tuple[torch.Tensor, torch.Tensor, NLL]]) -> dict[str, torch.Tensor]:
    """The diagonal of the empirical Fisher information, ``F_i = mean_n (∂ log p(y_n | x_n) / ∂θ_i)²``,
    one sample at a time (the mean of squared per-sample gradients, not the square of a
    batch's gradient). ``samples`` yields ``(x, y, nll)`` per old-task row; the model is in
    eval mode while it is measured."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    was = model.training
    model.eval()
    for x, y, nll in samples:
        model.zero_grad(set_to_none=True)
        nll(model, x.unsqueeze(0), y.unsqueeze(0)).backward()
        for n, p in params.items():
            if p.grad is not None:
                total[n] += p.grad.detach().pow(2)
        count += 1
    model.zero_grad(set_to_none=True)
    model.train(was)
    return {n: t / max(count, 1) for n, t in total.items()}


class EWC(Penalty):
    """``L = (λ / 2) · Σ_i F_i (θ_i − θ*_i)²`` (Kirkpatrick et al. 2017, Eq. 3): each weight
    is held near its value before the update, θ*, in proportion to how much the old tasks'
    likelihood depends on it (F, :func:`fisher_diagonal` on old rows). Parameters that did
    not exist before the update (a new task's head) are free.

    Args:
        start: the model before the update.
        fisher: ``F`` per parameter name of the model.
        lam: λ (the paper tunes it per benchmark; default 100 here, for a Fisher averaged
            over rows rather than summed).
    """

    def __init__(self, start: nn.Module, fisher: dict[str, torch.Tensor], lam: float = 100.0):
        _check_nonnegative(lam=lam)
        super().__init__(None)
        self.lam = lam
        anchors = {n: p.detach().clone() for n, p in start.named_parameters() if n in fisher}
        self.names = list(anchors)
        for i, n in enumerate(self.names):
            self.register_buffer(f"anchor_{i}", anchors[n])
            self.register_buffer(f"fisher_{i}", fisher[n].detach().clone())

    def attach(self, model: nn.Module) -> EWC:
        """Nothing to hook: the penalty reads the model's parameters."""
        return self

    def forward(self, model: nn.Module, x: torch.Tensor, task: str, y: torch.Tensor | None = None) -> torch.Tensor:
        params = dict(model.named_parameters())
        total = x.new_zeros(())
        for i, n in enumerate(self.names):
            total = total + (getattr(self, f"fisher_{i}") * (params[n] - getattr(self, f"anchor_{i}")).pow(2)).sum()
        return 0.5 * self.lam * total

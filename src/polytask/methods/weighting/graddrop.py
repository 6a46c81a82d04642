"""GradDrop: keep, per coordinate, the gradient sign that a purity-weighted coin picks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("graddrop")
class GradDrop(Weighting):
    """Gradient sign dropout (Chen et al., "Just Pick a Sign: Optimizing Deep Multitask
    Models with Gradient Sign Dropout", NeurIPS 2020).

    Per coordinate, the sign purity ``P = 0.5 (1 + sum_t g_t / sum_t |g_t|)`` (``P = 0.5``
    where every gradient is zero). With one uniform sample ``U`` per coordinate from the
    object's generator, keep the positive parts where ``U < P`` and the negative parts
    where ``U >= P``:

        ``M_t = 1[U < P] 1[g_t > 0] + 1[U >= P] 1[g_t < 0]``,
        ``combined = sum_t (l_t g_t + (1 - l_t) M_t g_t)``

    with leak ``l_t`` (default 0: pure GradDrop). Using ``<`` and ``>=`` splits ``[0, 1)``
    exactly, so a coordinate whose gradients all share one sign (``P`` in ``{0, 1}``) is
    always kept.

    The paper applies GradDrop to the gradient at the shared activations, optionally
    multiplied by the sign of the input for batch-separated gradients; here it acts on
    whatever ``[T, D]`` gradients it is given, with the identity transfer function ``f``.
    The result is not a linear combination of the task gradients: the weights are ``None``.

    Args:
        n_tasks: number of tasks.
        seed: seed of the generator drawing ``U``.
        leak: leak ``l`` in ``[0, 1]``: one value for all tasks or one per task.
    """

    def __init__(self, n_tasks: int, seed: int = 0, leak: float | Sequence[float] = 0.0):
        super().__init__(n_tasks, seed)
        leak_t = torch.as_tensor(leak, dtype=torch.float64)
        if leak_t.dim() == 0:
            leak_t = leak_t.repeat(n_tasks)
        if leak_t.shape != (n_tasks,) or (leak_t < 0).any() or (leak_t > 1).any():
            raise ValueError(f"graddrop: leak must be in [0, 1], one value or {n_tasks}, got {leak!r}")
        self.leak = leak
        self._leak = leak_t

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        g = grads.detach()
        # Per coordinate, the sums of the positive and of the negative parts (accumulated in
        # float64 without a float64 copy of g) give everything: sum g = pos + neg,
        # sum |g| = pos - neg, and the kept (unleaked) part is pos where U < P, else neg.
        pos = g.clamp_min(0).sum(0, dtype=torch.float64)
        neg = g.clamp_max(0).sum(0, dtype=torch.float64)
        total = pos + neg
        mass = pos - neg
        # P = 0.5 (1 + sum g / sum |g|); 0.5 where all gradients are zero (no 0/0).
        purity = 0.5 * (1.0 + torch.where(mass > 0, total / torch.where(mass > 0, mass, 1.0), 0.0))
        u = torch.rand(g.shape[1], generator=self.generator, dtype=torch.float64, device="cpu").to(g.device)
        first = u < purity
        leak = self._leak.to(g.device)
        if bool((leak == leak[0]).all()):
            # One leak for all tasks: sum_t (l g_t + (1 - l) M_t g_t) = l sum g + (1 - l) kept.
            kept = torch.where(first, pos, neg)
            lk = float(leak[0])
            combined = kept if lk == 0.0 else lk * total + (1.0 - lk) * kept
        else:
            g64 = g.to(torch.float64)
            keep = first[None, :] & (g64 > 0) | ~first[None, :] & (g64 < 0)
            combined = (leak[:, None] * g64 + (1.0 - leak[:, None]) * keep * g64).sum(0)
        self.last_weights = None
        return combined.to(grads.dtype), None

"""AdaBN: source training, then BatchNorm statistics recomputed on the target domain."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from polytask.methods.adaptation.base import Adapter, register_adapter


@register_adapter("adabn")
class AdaBN(Adapter):
    """Adaptive batch normalization (Li et al., 2016): no loss, target BatchNorm statistics.

    Training is plain source training (:meth:`loss` is a zero connected to the graph, so
    ``backward`` works whatever it is added to); after training, call
    :func:`adabn_recalibrate` on the model with target inputs so every BatchNorm layer
    normalizes with target statistics.
    """

    def _loss(self, f_s, f_t, logits_s, logits_t, progress, y_s):
        return f_s.sum() * 0.0

    @staticmethod
    def recalibrate(model: nn.Module, target_x: Tensor, batch_size: int = 256) -> nn.Module:
        """:func:`adabn_recalibrate`."""
        return adabn_recalibrate(model, target_x, batch_size)


@torch.no_grad()
def adabn_recalibrate(model: nn.Module, target_x: Tensor, batch_size: int = 256) -> nn.Module:
    """Replace every BatchNorm layer's running statistics by statistics of ``target_x``.

    Resets the running mean and variance of each BatchNorm layer that tracks them, then
    runs ``target_x`` through the model in ``ceil(N / batch_size)`` near-equal batches with
    ``momentum=None`` (PyTorch's cumulative average). Only the BatchNorm layers are in
    training mode meanwhile, so dropout does not perturb the statistics. The running mean is
    the exact target mean; the running variance is the average of the per-batch unbiased
    variances, the exact unbiased target variance when one batch holds all of ``target_x``.
    Each layer's momentum and every module's training flag are restored afterwards.

    Args:
        model: the network (its BatchNorm layers are updated in place).
        target_x: target inputs ``[N, ...]``, on the model's device.
        batch_size: largest batch size (at least 2: BatchNorm needs two values per channel).

    Returns:
        ``model``.
    """
    if batch_size < 2:
        raise ValueError(f"adabn: batch_size must be at least 2, got {batch_size}")
    if len(target_x) < 2:
        raise ValueError(f"adabn: needs at least 2 target inputs, got {len(target_x)}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    modes = {m: m.training for m in model.modules()}
    momenta = [m.momentum for m in norms]
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        # Near-equal batches: the cumulative average weighs batches equally, and no batch of 1.
        for chunk in torch.tensor_split(target_x, math.ceil(len(target_x) / batch_size)):
            model(chunk)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return model

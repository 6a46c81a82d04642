"""Hard parameter sharing: one backbone, one linear head per task."""

from __future__ import annotations

import torch
from torch import nn

from polytask.core.tasks import Task


class MultiTaskModel(nn.Module):
    """``heads[task](backbone(x))``.

    Attributes:
        backbone: shared layers with an ``out_features`` attribute.
        heads: one ``nn.Linear`` per task, keyed by task name.
    """

    # Every head reads one representation, backbone(x): tasks on the same inputs can share
    # one backbone pass (the engine relies on forward being exactly heads[task](backbone(x))).
    shares_representation = True

    def __init__(self, backbone: nn.Module, tasks: list[Task]):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict({t.name: nn.Linear(backbone.out_features, t.n_outputs) for t in tasks})

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return self.heads[task](self.backbone(x))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task uses: the backbone's."""
        return list(self.backbone.parameters())


class FeatureBackbone(nn.Module):
    """Backbone of feature extraction: precomputed features (identity), or a frozen ``inner``
    module, optionally standardized with fixed statistics of the training features.

    Standardizing is what a linear probe needs to train in few steps: sentence encoders
    return unit-length vectors whose coordinates are ~0.05, so an unscaled head barely
    moves its logits in a short budget (MAE's linear probe puts a BatchNorm without affine
    parameters before the head for the same reason). A fixed affine map of the features
    does not change what a linear head can represent.
    """

    def __init__(self, out_features: int, mean: torch.Tensor | None = None, std: torch.Tensor | None = None, inner: nn.Module | None = None):
        super().__init__()
        self.out_features = out_features
        self.inner = inner
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x if self.inner is None else self.inner(x)
        return z if self.mean is None else (z - self.mean) / self.std


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of training features (std 1 where constant or one row)."""
    mean = features.mean(dim=0)
    std = features.std(dim=0) if len(features) > 1 else torch.ones_like(mean)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, optionally only those with ``requires_grad``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

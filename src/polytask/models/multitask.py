"""Hard parameter sharing: one backbone, one linear head per task."""

from __future__ import annotations

import torch
from torch import nn

from polytask.tasks import Task


class MultiTaskModel(nn.Module):
    """``heads[task](backbone(x))``.

    Attributes:
        backbone: shared layers with an ``out_features`` attribute.
        heads: one ``nn.Linear`` per task, keyed by task name.
    """

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
    """Identity backbone over precomputed features (feature extraction on a cache)."""

    def __init__(self, out_features: int):
        super().__init__()
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, optionally only those with ``requires_grad``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

"""``mlp``: a fully connected backbone for tabular rows (and flattened images)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.backbones.base import register_backbone


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU -> Dropout`` per hidden width."""

    def __init__(self, in_features: int, hidden: list[int], dropout: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
            in_features = width
        self.net = nn.Sequential(*layers)
        self.out_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_backbone("mlp")
def build_mlp(input_shape: tuple[int, ...], hidden: Sequence[int] = (256, 256), dropout: float = 0.1) -> nn.Module:
    """An :class:`MLP` over the flattened inputs: ``hidden`` layer widths, then ``dropout``."""
    if not all(isinstance(d, int) for d in input_shape):
        raise ConfigError("backbone 'mlp' reads numeric inputs, but the task's inputs are text: use gru, minilm or hf:<name>")
    return MLP(math.prod(input_shape), list(hidden), dropout)

"""Backbones by name: the registered architectures (:mod:`polytask.methods.backbones.base`, the
text ones in :mod:`polytask.methods.backbones.text`) and the pretrained ones
(:mod:`polytask.methods.backbones.pretrained`)."""

from __future__ import annotations

from torch import nn

from polytask.config import ModelConfig
from polytask.core.errors import ConfigError
from polytask.methods.backbones.base import BACKBONES
from polytask.methods.backbones.pretrained import PRETRAINED, build, is_pretrained  # imports models.text: gru registers itself


def backbone_names() -> list[str]:
    """Registered backbone names, those with pretrained weights included."""
    return [*BACKBONES.names(), *PRETRAINED.names()]


def create_backbone(name: str, input_shape: tuple[int, ...], cfg: ModelConfig, pretrained: bool = False) -> nn.Module:
    """Build backbone ``name`` for inputs of ``input_shape`` (one sample).

    Args:
        name: a registered name, or ``hf:``/``timm:``/``run:``/``module:`` (see
            :mod:`polytask.methods.backbones.pretrained`).
        pretrained: load the backbone's pretrained weights; otherwise its architecture
            is randomly initialized.

    Raises:
        ConfigError: unknown name, inputs the backbone cannot read, or pretrained
            weights asked of a backbone that has none.
    """
    if is_pretrained(name):
        return build(name, tuple(input_shape), cfg, pretrained)
    if pretrained:
        known = ", ".join(n for n in backbone_names() if is_pretrained(n))
        raise ConfigError(f"backbone '{name}' has no pretrained weights (pretrained ones: {known}, hf:, timm:, run:)")
    return BACKBONES.get_item(name)(tuple(input_shape), cfg)

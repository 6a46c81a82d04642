"""Backbones (the shared layers) by name: trained from scratch (``mlp``, ``cnn``, ``gru``) or
pretrained (``efficientnet-lite0``, ``minilm``, ``hf:``, ``timm:``, ``run:``, ``module:``)."""

from polytask.methods.backbones.base import from_user_module, register_backbone
from polytask.methods.backbones.build import backbone_names, create_backbone

__all__ = ["backbone_names", "create_backbone", "from_user_module", "register_backbone"]

"""Models: backbones (shared layers), heads and the multi-task model."""

from polytask.models.backbones import from_user_module, register_backbone
from polytask.models.build import backbone_names, create_backbone
from polytask.models.multitask import FeatureBackbone, MultiTaskModel, count_params

__all__ = [
    "FeatureBackbone",
    "MultiTaskModel",
    "backbone_names",
    "count_params",
    "create_backbone",
    "from_user_module",
    "register_backbone",
]

"""Models: backbones (shared layers), heads and the multi-task model."""

import importlib

from polytask.models.backbones import from_user_module, register_backbone
from polytask.models.build import backbone_names, create_backbone
from polytask.models.multitask import FeatureBackbone, MultiTaskModel, count_params

# Sharing architectures register themselves on import.
for _module in ("stagewise", "experts"):
    importlib.import_module(f"polytask.models.{_module}")

__all__ = [
    "FeatureBackbone",
    "MultiTaskModel",
    "backbone_names",
    "count_params",
    "create_backbone",
    "from_user_module",
    "register_backbone",
]

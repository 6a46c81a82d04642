"""How tasks share layers: hard sharing (one backbone, a head per task) and the soft-sharing
architectures, which register themselves when this package is imported."""

import importlib

from polytask.methods.architectures.base import ARCHITECTURES, register_architecture
from polytask.methods.architectures.multitask import FeatureBackbone, MultiTaskModel, count_params

for _module in ("stagewise", "experts", "extraction", "mmoe", "cgc", "ple", "dselect_k"):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["ARCHITECTURES", "FeatureBackbone", "MultiTaskModel", "count_params", "register_architecture"]

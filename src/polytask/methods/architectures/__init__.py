"""How tasks share layers: hard sharing (one backbone, a head per task) and the soft-sharing
architectures, which register themselves when this package is imported."""

from polytask.core.registry import import_modules
from polytask.methods.architectures.base import ARCHITECTURES, register_architecture
from polytask.methods.architectures.multitask import FeatureBackbone, MultiTaskModel, count_params

import_modules(__name__, __path__, first=("stagewise", "experts", "extraction", "mmoe", "cgc", "ple", "dselect_k"))

__all__ = ["ARCHITECTURES", "FeatureBackbone", "MultiTaskModel", "count_params", "register_architecture"]

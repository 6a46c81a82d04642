"""Typed, frozen study configuration: the schema alone.

A study is described by a YAML file (or the same structure built in Python). Every
model rejects unknown keys, so a typo fails loudly with the field's name instead of
being silently ignored. Paths are resolved relative to the config file. Names of
backbones, methods and strategies are plain strings here; :mod:`polytask.study.resolve`
checks them against the registries. Imports :mod:`polytask.core` alone, and no PyTorch.
"""

from polytask.config.base import Frozen, TaskKind, describe, error_line
from polytask.config.data import ColumnsConfig, DataConfig, TaskConfig, tasks_from_columns
from polytask.config.load import load_config, load_update_config, validate
from polytask.config.model import CNNConfig, GRUConfig, ImageNetConfig, MLPConfig, ModelConfig, TextConfig
from polytask.config.study import AnalysisConfig, SSLSourceConfig, StudyConfig
from polytask.config.training import TUNABLE_TRAIN, DomainAdaptConfig, FineTuneConfig, MTLConfig, TrainConfig, TuneConfig
from polytask.config.update import GateConfig, GuardConfig, UpdateConfig, UpdateTaskConfig

__all__ = [
    "TUNABLE_TRAIN",
    "AnalysisConfig",
    "CNNConfig",
    "ColumnsConfig",
    "DataConfig",
    "DomainAdaptConfig",
    "FineTuneConfig",
    "Frozen",
    "GRUConfig",
    "ImageNetConfig",
    "MLPConfig",
    "MTLConfig",
    "SSLSourceConfig",
    "GateConfig",
    "GuardConfig",
    "UpdateConfig",
    "UpdateTaskConfig",
    "ModelConfig",
    "StudyConfig",
    "TaskConfig",
    "TaskKind",
    "TextConfig",
    "TrainConfig",
    "TuneConfig",
    "describe",
    "error_line",
    "load_config",
    "load_update_config",
    "tasks_from_columns",
    "validate",
]

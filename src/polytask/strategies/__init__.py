"""Strategies: how a target task is learned. Each builds a model and a data plan, then
calls the one engine; none has a training loop of its own.

- ``scratch``: the target alone, random initialization (``aa-control``: the same with its
  own random stream, an A/A control).
- ``feature-extraction``: shared layers pretrained on the other tasks, frozen; a new head
  trained on features computed once per run.
- ``fine-tune``: the same pretrained shared layers and a new head, all trained on the
  target, the pretrained layers at ``train.backbone_lr_ratio`` of the learning rate.
- ``mtl``: one model for every target, shared layers and a head per task, trained on every
  task at once (a joint strategy: one run fills the cells of all targets);
  ``mtl-per-target``: such a model per target, selected on that target.
- ``domain-adapt:<method>`` (:mod:`polytask.strategies.domain_adapt`).

One file per strategy; each registers itself with :func:`register_strategy` (a
:class:`StrategySpec` in :data:`STRATEGIES`), and this package imports them all.
"""

from polytask.core.registry import import_modules
from polytask.strategies.base import (
    ALL_TARGETS,
    STRATEGIES,
    TARGET,
    Preflight,
    RunContext,
    RunOutcome,
    StrategySpec,
    check_strategy,
    get_strategy,
    is_joint,
    label_counts,
    register_strategy,
    ssl_source,
    strategy_argument,
    strategy_names,
    strategy_spec,
    transfer_source,
    uses_study_pretraining,
    uses_transfer_source,
)
from polytask.strategies.features import FeatureCache
from polytask.strategies.pretrain import pretrain, pretrain_ssl

# Each module registers its strategies on import; the shipped ones are listed in this order,
# any other module after them.
import_modules(__name__, __path__, first=("scratch", "mtl", "feature_extraction", "fine_tune", "domain_adapt"))

__all__ = [
    "ALL_TARGETS",
    "STRATEGIES",
    "TARGET",
    "FeatureCache",
    "Preflight",
    "RunContext",
    "RunOutcome",
    "StrategySpec",
    "check_strategy",
    "get_strategy",
    "is_joint",
    "label_counts",
    "pretrain",
    "pretrain_ssl",
    "register_strategy",
    "strategy_argument",
    "strategy_names",
    "strategy_spec",
    "ssl_source",
    "transfer_source",
    "uses_study_pretraining",
    "uses_transfer_source",
]

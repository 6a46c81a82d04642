"""What every strategy shares: the run's context and outcome, the checks before a study,
the registry of strategies (:class:`StrategySpec`) and the one way a strategy trains and
tests through the engine."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from polytask.config import SSLSourceConfig, StudyConfig
from polytask.core.registry import Registry
from polytask.core.targets import labelled_rows
from polytask.core.tasks import Task
from polytask.data.prepare import PreparedTask
from polytask.data.preprocess import InputTransform
from polytask.methods.architectures.multitask import MultiTaskModel, count_params
from polytask.methods.backbones import is_pretrained
from polytask.strategies.features import FeatureCache
from polytask.training.engine import Predictions, fit, predict


@dataclass
class RunContext:
    """Everything a strategy needs for one run ``(target, fraction, seed)``.

    Attributes:
        target: the target task (for a joint strategy, the first of ``targets``).
        targets: the target tasks one run learns: ``(target,)``, or every target of the
            study for a joint strategy (one model for all of them).
        input_shape: shape of one sample as backbones take it (``TEXT_SHAPE`` for text).
        prepare: ``prepare(task_name, fraction, hide_labels=False, source=None)`` gives
            that task's tensors for this seed (``hide_labels``: every training row, the
            labels outside ``fraction`` marked missing; ``source``: tokenize text for
            that pretrained backbone rather than ``model.backbone``).
        new_backbone: ``new_backbone(input_shape)`` builds ``model.backbone``, randomly
            initialized.
        pretrained: ``pretrained(source=None)`` returns ``(backbone, seconds)``: the
            named pretrained backbone, or, without one, shared layers pretrained on
            every task but the target for this seed (trained once, then cached).
        pretrained_heads: ``pretrained_heads(source=None)``: the heads of the tasks those
            layers were pretrained on (None for a named pretrained backbone).
        augment: ``augment(source=None)``: the study's augmenters per task (text ones
            use the pad and mask ids of ``source``'s tokenizer).
        feature_cache: features of frozen backbones shared by the runs of one process.
        callbacks: passed to the engine (progress display).
        input_groups: ``{task: key}`` for tasks that share their inputs with another task
            (label columns of one file, one builtin's targets), one key per group.
    """

    target: str
    fraction: float
    seed: int
    config: StudyConfig
    tasks: dict[str, Task]
    input_shape: tuple
    prepare: Callable[..., PreparedTask]
    new_backbone: Callable[..., nn.Module]
    pretrained: Callable[..., tuple[nn.Module, float]]
    pretrained_heads: Callable[..., nn.ModuleDict | None] = lambda source=None: None
    augment: Callable[..., dict[str, Any]] = lambda source=None: {}
    feature_cache: FeatureCache = field(default_factory=lambda: FeatureCache())
    callbacks: Sequence[Any] = ()
    targets: tuple[str, ...] = ()
    input_groups: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets) or (self.target,)


@dataclass
class RunOutcome:
    """Numbers one run produced, as recorded in ``results.jsonl`` (``extra``: strategy-specific
    numbers, e.g. which validator chose the checkpoint)."""

    test: float
    val: float
    train_seconds: float
    trainable_params: int
    backbone_params: int
    head_params: int
    epochs: int
    best_epoch: int
    pretrain_seconds: float = 0.0
    train_labels: int = 0
    val_labels: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # Per epoch: the training loss, each task's validation metric and MTL task weights.
    history: list[dict[str, float]] = field(default_factory=list)
    # The trained shared layers (kept when the study saves models; never in results.jsonl).
    backbone: nn.Module | None = field(default=None, repr=False, compare=False)
    # The whole trained model, heads included (``polytask train`` saves it; never in results.jsonl).
    model: nn.Module | None = field(default=None, repr=False, compare=False)
    # Per labelled test row, what the metric read (saved beside results.jsonl, for resampling).
    predictions: Predictions | None = field(default=None, repr=False, compare=False)
    # Per task the run prepared: the input preprocessing fitted on its training rows (a saved
    # model repeats it) and the task as trained (a regression's target scaling).
    transforms: dict[str, InputTransform] = field(default_factory=dict, repr=False, compare=False)
    run_tasks: dict[str, Task] = field(default_factory=dict, repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        """The fields written to ``results.jsonl``."""
        return {k: v for k, v in self.__dict__.items() if k not in ("backbone", "model", "predictions", "transforms", "run_tasks")}


def label_counts(target: PreparedTask) -> dict[str, int]:
    """Labelled training and validation rows of a run: the labels it used."""
    return {split: int(labelled_rows(target.task, getattr(target, split).y).sum()) for split in ("train", "val")}


@dataclass
class Preflight:
    """What a strategy's check reads before a study runs anything.

    Attributes:
        strategy: the strategy as the config names it (``fine-tune:minilm``).
        config: the study's config.
        tasks: every task, as loaded.
        backbone: ``backbone(source=None)`` builds the layers the strategy would start
            from for the first target's inputs (``source``: a pretrained backbone's name),
            so checks can read their structure.
    """

    strategy: str
    config: StudyConfig
    tasks: dict[str, Task]
    backbone: Callable[..., nn.Module]


StrategyFn = Callable[[RunContext], "RunOutcome | dict[str, RunOutcome]"]
CheckFn = Callable[[Preflight, "str | None"], None]

# What a strategy's run learns: its one target, or every target of the study with one model.
TARGET, ALL_TARGETS = "target", "all targets"


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy.

    Attributes:
        name: its name in configs.
        run: ``run(ctx, **{argument: value})`` trains and tests; returns a
            :class:`RunOutcome`, or ``{target: RunOutcome}`` when ``scope`` is all targets.
        uses_pretrained: it starts from pretrained shared layers (the study's own unless a
            source is named), so a parallel study trains those first.
        argument: the keyword that ``name:<value>`` sets (``mtl:pcgrad`` sets
            ``weighting``, ``fine-tune:minilm`` sets ``source``), or None.
        scope: ``"target"`` (one model per target) or ``"all targets"`` (one model for
            every target of the study: one run fills the cells of all of them).
        reads_target_labels: whether it trains on the target's labels; with the labels
            withheld (``unlabeled:``) only strategies that do not are what a user can run.
        check: ``check(preflight, value)`` raises :class:`~polytask.core.errors.ConfigError`
            for a configuration the strategy cannot run; a study calls it before it
            writes anything, so a bad setting never stops a study halfway.
    """

    name: str
    run: StrategyFn
    uses_pretrained: bool = False
    argument: str | None = None
    scope: str = TARGET
    reads_target_labels: bool = True
    check: CheckFn | None = None


STRATEGIES: Registry[StrategySpec] = Registry("strategy")


def register_strategy(
    name: str,
    uses_pretrained: bool = False,
    argument: str | None = None,
    check: CheckFn | None = None,
    scope: str = TARGET,
    reads_target_labels: bool = True,
):
    """Decorator registering a strategy function as a :class:`StrategySpec` (the fields
    are the spec's); a duplicate name raises."""
    if scope not in (TARGET, ALL_TARGETS):
        raise ValueError(f"strategy scope must be '{TARGET}' or '{ALL_TARGETS}', got {scope!r}")

    def wrap(fn: StrategyFn) -> StrategyFn:
        STRATEGIES.register(name)(StrategySpec(name, fn, uses_pretrained, argument, scope, reads_target_labels, check))
        return fn

    return wrap


def strategy_spec(name: str) -> StrategySpec:
    """The spec of ``name`` or ``name:<value>``."""
    return STRATEGIES.get_item(name.partition(":")[0])


def check_strategy(pre: Preflight) -> None:
    """Run the registered check of ``pre.strategy``, if it has one."""
    spec = strategy_spec(pre.strategy)
    if spec.check is not None:
        spec.check(pre, pre.strategy.partition(":")[2] or None)


def strategy_names() -> list[str]:
    """Registered strategy names."""
    return STRATEGIES.names()


def strategy_argument(name: str) -> str | None:
    """The keyword ``name:<value>`` sets, or None when the strategy takes none."""
    return STRATEGIES[name].argument if name in STRATEGIES else None


def get_strategy(name: str) -> StrategyFn:
    """The strategy registered as ``name``; ``base:<value>`` binds its argument (``mtl:pcgrad``)."""
    spec = strategy_spec(name)
    value = name.partition(":")[2]
    return functools.partial(spec.run, **{spec.argument: value}) if value else spec.run


def is_joint(strategy: str) -> bool:
    """Whether ``strategy`` trains one model for every target (``mtl``, ``mtl:<method>``)."""
    return strategy_spec(strategy).scope == ALL_TARGETS


def uses_transfer_source(strategy: str) -> bool:
    """Whether ``strategy`` starts from pretrained layers (in-study or ``:<source>``)."""
    return strategy_spec(strategy).uses_pretrained


def ssl_source(config: StudyConfig, strategy: str) -> str | None:
    """The name of the self-supervised source (``sources: {name: {pretrain: ...}}``) a
    transfer strategy starts from (``fine-tune:<name>``), or None."""
    _, _, arg = strategy.partition(":")
    return arg if arg and isinstance(config.sources.get(arg), SSLSourceConfig) else None


def transfer_source(config: StudyConfig, strategy: str) -> str | None:
    """The pretrained backbone a transfer strategy starts from, or None for layers
    pretrained inside the study (on the other tasks, or self-supervised: :func:`ssl_source`).

    ``fine-tune:<source>`` names it (a name of ``sources:`` or a backbone); plain
    ``fine-tune`` uses ``model.backbone`` when that one has pretrained weights.
    """
    _, _, arg = strategy.partition(":")
    if arg:
        source = config.sources.get(arg, arg)
        return source if isinstance(source, str) else None
    return config.model.backbone if is_pretrained(config.model.backbone) else None


def uses_study_pretraining(strategy: str, config: StudyConfig) -> bool:
    """Whether ``strategy`` starts from shared layers pretrained inside the study on the other tasks."""
    return uses_transfer_source(strategy) and transfer_source(config, strategy) is None and ssl_source(config, strategy) is None


def train_and_test(ctx: RunContext, model: MultiTaskModel, data: dict[str, PreparedTask], target: PreparedTask, **kw) -> RunOutcome:
    """Fit through the engine, select on the target's validation metric, test once."""
    kw.setdefault("augment", ctx.augment(None))
    result = fit(model, data, ctx.config.train, ctx.seed, select=ctx.target, callbacks=ctx.callbacks, **kw)
    return outcome(ctx, model, target, result)


def outcome(ctx: RunContext, model: nn.Module, target: PreparedTask, result, name: str | None = None) -> RunOutcome:
    """Test once (after model selection) and collect the run's numbers for task ``name``
    (default: the run's target)."""
    name = name or ctx.target
    test = predict(model, target, target.test)
    labels = label_counts(target)
    return RunOutcome(
        test=test.metric,
        val=result.best_val[name],
        train_seconds=result.seconds,
        trainable_params=count_params(model, trainable_only=True),
        backbone_params=count_params(model) - count_params(model.heads),
        head_params=count_params(model.heads[name]),
        epochs=result.epochs,
        best_epoch=result.best_epoch,
        history=result.history,
        train_labels=labels["train"],
        val_labels=labels["val"],
        backbone=getattr(model, "backbone", None),
        model=model,
        predictions=test,
    )

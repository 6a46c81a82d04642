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
- ``domain-adapt:<method>`` (:mod:`polytask.transfer.domain_adapt`).
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from polytask.config import StudyConfig
from polytask.data.prepare import PreparedTask, Split
from polytask.digest import state_digest, tensor_digest
from polytask.engine import EVAL_BATCH, Predictions, fit, predict, seed_everything
from polytask.models.architectures import build_multitask_model
from polytask.models.multitask import FeatureBackbone, MultiTaskModel, count_params, feature_statistics
from polytask.models.pretrained import is_pretrained
from polytask.registry import Registry
from polytask.sampling import task_probabilities
from polytask.tasks import Task
from polytask.transfer.finetune import check_recipe, fine_tune_model
from polytask.weighting import create as create_weighting


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
    # The trained shared layers (kept when the study saves models; never in results.jsonl).
    backbone: nn.Module | None = field(default=None, repr=False, compare=False)
    # Per labelled test row, what the metric read (saved beside results.jsonl, for resampling).
    predictions: Predictions | None = field(default=None, repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        """The fields written to ``results.jsonl``."""
        return {k: v for k, v in self.__dict__.items() if k not in ("backbone", "predictions")}


def label_counts(target: PreparedTask) -> dict[str, int]:
    """Labelled training and validation rows of a run: the labels it used."""
    return {split: int(target.task.labelled_rows(getattr(target, split).y).sum()) for split in ("train", "val")}


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
STRATEGIES: Registry[StrategyFn] = Registry("strategy")
PRETRAINED: set[str] = set()
# strategies that train one model for every target at once and return an outcome per target
JOINT: set[str] = set()
# strategy -> the keyword argument that ``<strategy>:<value>`` fills
ARGUMENTS: dict[str, str] = {}
# strategy -> its check, run before anything of a study is written
CHECKS: dict[str, CheckFn] = {}


def register_strategy(name: str, uses_pretrained: bool = False, argument: str | None = None, check: CheckFn | None = None, joint: bool = False):
    """Decorator registering a strategy function; a duplicate name raises.

    Args:
        name: the strategy's name in configs.
        joint: one run learns every target of the study with one model, and returns
            ``{target: RunOutcome}`` (``ctx.targets`` lists them).
        uses_pretrained: the strategy starts from pretrained shared layers (the study's
            own, unless a source is named), so parallel execution can train those first.
        argument: keyword of the function that ``name:<value>`` sets (``mtl:pcgrad``
            sets ``weighting``, ``fine-tune:minilm`` sets ``source``).
        check: ``check(preflight, value)`` raises :class:`~polytask.errors.ConfigError` for
            a configuration the strategy cannot run (``value``: what follows ``name:``).
            A study calls it before it writes anything, so a bad setting never stops a
            study halfway.
    """
    add = STRATEGIES.register(name)

    def wrap(fn: StrategyFn) -> StrategyFn:
        add(fn)
        if uses_pretrained:
            PRETRAINED.add(name)
        if argument:
            ARGUMENTS[name] = argument
        if check:
            CHECKS[name] = check
        if joint:
            JOINT.add(name)
        return fn

    return wrap


def check_strategy(pre: Preflight) -> None:
    """Run the registered check of ``pre.strategy``, if it has one."""
    base, _, value = pre.strategy.partition(":")
    if base in CHECKS:
        CHECKS[base](pre, value or None)


def strategy_names() -> list[str]:
    """Registered strategy names."""
    return STRATEGIES.names()


def strategy_argument(name: str) -> str | None:
    """The keyword ``name:<value>`` sets, or None when the strategy takes none."""
    return ARGUMENTS.get(name)


def get_strategy(name: str) -> StrategyFn:
    """The strategy registered as ``name``; ``base:<value>`` binds its argument (``mtl:pcgrad``)."""
    base, _, value = name.partition(":")
    fn = STRATEGIES.get_item(base)
    return functools.partial(fn, **{ARGUMENTS[base]: value}) if value else fn


def is_joint(strategy: str) -> bool:
    """Whether ``strategy`` trains one model for every target (``mtl``, ``mtl:<method>``)."""
    return strategy.partition(":")[0] in JOINT


def uses_transfer_source(strategy: str) -> bool:
    """Whether ``strategy`` starts from pretrained layers (in-study or ``:<source>``)."""
    return strategy.partition(":")[0] in PRETRAINED


def uses_study_pretraining(strategy: str, config: StudyConfig) -> bool:
    """Whether ``strategy`` starts from shared layers pretrained inside the study."""
    return strategy.partition(":")[0] in PRETRAINED and config.transfer_source(strategy) is None


def _train_and_test(ctx: RunContext, model: MultiTaskModel, data: dict[str, PreparedTask], target: PreparedTask, **kw) -> RunOutcome:
    """Fit through the engine, select on the target's validation metric, test once."""
    kw.setdefault("augment", ctx.augment(None))
    result = fit(model, data, ctx.config.train, ctx.seed, select=ctx.target, callbacks=ctx.callbacks, **kw)
    return _outcome(ctx, model, target, result)


def _outcome(ctx: RunContext, model: nn.Module, target: PreparedTask, result, name: str | None = None) -> RunOutcome:
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
        train_labels=labels["train"],
        val_labels=labels["val"],
        backbone=getattr(model, "backbone", None),
        predictions=test,
    )


@register_strategy("scratch")
def scratch(ctx: RunContext) -> RunOutcome:
    """The target task alone, from a random initialization."""
    target = ctx.prepare(ctx.target, ctx.fraction)
    seed_everything(ctx.seed)
    model = MultiTaskModel(ctx.new_backbone(ctx.input_shape), [target.task])
    return _train_and_test(ctx, model, {ctx.target: target}, target)


# The A/A control's own stream for initialization and batch order: far from any study's seeds.
CONTROL_SEED_OFFSET = 1_000_003


@register_strategy("aa-control")
def aa_control(ctx: RunContext) -> RunOutcome:
    """An A/A control: ``scratch`` again, with the same validation carve and training subset
    but its own stream for initialization and batch order (a seed offset).

    Its paired differences with ``scratch`` are pure seed noise, so its verdicts measure
    how often the analysis calls noise a difference (an identical copy would differ by
    exactly 0 and test nothing). Never recommended.
    """
    target = ctx.prepare(ctx.target, ctx.fraction)
    seed = ctx.seed + CONTROL_SEED_OFFSET
    seed_everything(seed)
    model = MultiTaskModel(ctx.new_backbone(ctx.input_shape), [target.task])
    result = fit(model, {ctx.target: target}, ctx.config.train, seed, select=ctx.target, callbacks=ctx.callbacks, augment=ctx.augment(None))
    return _outcome(ctx, model, target, result)


def _multitask_data(ctx: RunContext, fractions: dict[str, float], rep_grad: bool) -> dict[str, PreparedTask]:
    """Every task's tensors at its fraction. A task that shares its inputs with a task at
    another fraction keeps every row with the labels outside its fraction hidden, so the
    rows line up and the engine runs one forward pass for all of them (and gradients on
    the representation see one batch)."""
    def hide(n: str) -> bool:
        if fractions[n] >= 1.0:
            return False
        group = ctx.input_groups.get(n)
        return rep_grad or any(ctx.input_groups.get(m) == group and fractions[m] != fractions[n] for m in fractions if group is not None)

    return {n: ctx.prepare(n, fractions[n], hide(n)) for n in ctx.tasks}


def _multitask_model(ctx: RunContext, data: dict[str, PreparedTask], weighting: str | None):
    """The model, the weighting method and the engine options of a multi-task run."""
    cfg = ctx.config.mtl
    name = weighting or cfg.weighting
    method = create_weighting(name, len(data), seed=ctx.seed, **cfg.hparams(name))
    sampling = None
    if cfg.sampling != "uniform":
        sizes = {n: int(d.task.labelled_rows(d.train.y).sum()) for n, d in data.items()}
        sampling = task_probabilities(sizes, cfg.sampling, cfg.temperature)
    seed_everything(ctx.seed)
    arch = ctx.config.model
    new = functools.partial(ctx.new_backbone, ctx.input_shape, pretrained=is_pretrained(arch.backbone))
    model = build_multitask_model(arch.architecture, new, ctx.input_shape, [d.task for d in data.values()], **arch.architecture_options())
    return model, {"weighting": method, "sampling": sampling, "rep_grad": cfg.uses_rep_grad(name)}


@register_strategy("mtl", argument="weighting", joint=True)
def mtl(ctx: RunContext, weighting: str | None = None) -> dict[str, RunOutcome]:
    """One model for every target: shared backbone, a head per task, balanced by a weighting method.

    The model you would deploy: every target at the run's fraction, every source task
    with all of its training data (exactly the data in-study pretraining for a target uses
    besides that target's own). The epoch is chosen on the mean over targets of each
    target's validation metric relative to its first value; each target's test metric is
    that one model's. A ``model.backbone`` with pretrained weights starts from them (every
    task fine-tunes one shared pretrained network); others start from a random
    initialization. ``weighting`` defaults to the config's ``mtl.weighting`` (equal
    weights unless set); ``mtl.sampling`` sets how often each task's rows are drawn. With
    gradients on the representation (``mtl.rep_grad``, ``mgda-ub``) every task trains on
    one shared batch: targets keep all of their rows, labels outside the fraction hidden.
    Tasks on the same inputs share one forward pass per step (:func:`_multitask_data`).
    """
    rep_grad = ctx.config.mtl.uses_rep_grad(weighting or ctx.config.mtl.weighting)
    data = _multitask_data(ctx, {n: ctx.fraction if n in ctx.targets else 1.0 for n in ctx.tasks}, rep_grad)
    model, options = _multitask_model(ctx, data, weighting)
    result = fit(model, data, ctx.config.train, ctx.seed, select=list(ctx.targets), callbacks=ctx.callbacks, augment=ctx.augment(None), **options)
    return {t: _outcome(ctx, model, data[t], result, t) for t in ctx.targets}


@register_strategy("mtl-per-target", argument="weighting")
def mtl_per_target(ctx: RunContext, weighting: str | None = None) -> RunOutcome:
    """A multi-task model for one target: the other tasks, in full, help this one target.

    The target at the run's fraction, every other task (other targets included) with all
    of its training data; the epoch is chosen on the target's validation metric. One
    model per target, so it answers "does joint training help this task?" rather than
    "what does one shared model cost?" (that is ``mtl``).
    """
    rep_grad = ctx.config.mtl.uses_rep_grad(weighting or ctx.config.mtl.weighting)
    data = _multitask_data(ctx, {n: ctx.fraction if n == ctx.target else 1.0 for n in ctx.tasks}, rep_grad)
    model, options = _multitask_model(ctx, data, weighting)
    return _train_and_test(ctx, model, data, data[ctx.target], **options)


def _stay_in_eval(module: nn.Module, inputs) -> None:
    module.eval()  # returns None: a pre-hook's return value would replace the inputs


@torch.no_grad()
def _features(backbone: nn.Module, split: Split) -> torch.Tensor:
    return torch.cat([backbone(x) for x in split.x.split(EVAL_BATCH)])


class FeatureCache:
    """Features of frozen layers, shared by the runs of one process, at most ``max_bytes``.

    Keys must name everything the features depend on (content digests of the layers and
    of the inputs). Each entry keeps the seconds its computation took, so that a run that
    finds its features here is charged what computing them costs. The least recently used
    entries are dropped first.
    """

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Any, tuple[torch.Tensor, float]] = OrderedDict()

    def get(self, key: Any, compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
        """The cached ``(features, seconds)`` under ``key``, computing them on a miss."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        start = time.perf_counter()
        features = compute()
        entry = self._entries[key] = (features, time.perf_counter() - start)
        while len(self._entries) > 1 and sum(f.nbytes for f, _ in self._entries.values()) > self.max_bytes:
            self._entries.popitem(last=False)
        return entry

    def __len__(self) -> int:
        return len(self._entries)


@register_strategy("feature-extraction", uses_pretrained=True, argument="source")
def feature_extraction(ctx: RunContext, source: str | None = None) -> RunOutcome:
    """Frozen pretrained shared layers; a new head trained on features computed once.

    The head reads the features standardized with the training rows' statistics
    (:class:`~polytask.models.multitask.FeatureBackbone`). When the target's inputs are
    augmented, every step sees new inputs, so the head trains through the frozen backbone
    (kept in eval mode) instead, with the same standardization.
    """
    target = ctx.prepare(ctx.target, ctx.fraction, source=source)
    backbone, pre_seconds = ctx.pretrained(source)
    backbone.eval().requires_grad_(False)
    augment = ctx.augment(source)
    if augment.get(ctx.target) is not None:
        # The engine calls model.train() each epoch; the frozen backbone must stay in eval
        # mode (no BatchNorm updates, no dropout) to be a fixed feature extractor.
        backbone.register_forward_pre_hook(_stay_in_eval)
        mean, std = feature_statistics(_features(backbone, target.train))
        seed_everything(ctx.seed)
        model = MultiTaskModel(FeatureBackbone(backbone.out_features, mean, std, inner=backbone), [target.task])
        out = _train_and_test(ctx, model, {ctx.target: target}, target, param_groups=[{"params": list(model.heads.parameters())}], augment=augment)
        out.backbone = backbone
        out.backbone_params = count_params(backbone)
        out.pretrain_seconds = pre_seconds
        return out
    # Features are computed once per (frozen layers, inputs) and cached across the runs of
    # a process, keyed by the content of both: the inputs' scaling follows each run's
    # training rows, so a key such as (target, seed) would hand one run another's features.
    # A run is charged the time its features took to compute, cached or not, so its cost
    # does not depend on which runs came before it.
    layers = state_digest(backbone)
    splits, feature_seconds = [], 0.0
    for split in (target.train, target.val, target.test):
        features, seconds = ctx.feature_cache.get((layers, tensor_digest(split.x)), lambda s=split: _features(backbone, s))
        splits.append(Split(features, split.y))
        feature_seconds += seconds
    cached = PreparedTask(target.task, *splits)
    seed_everything(ctx.seed)
    head_model = MultiTaskModel(FeatureBackbone(backbone.out_features, *feature_statistics(splits[0].x)), [target.task])
    out = _train_and_test(ctx, head_model, {ctx.target: cached}, cached, augment={})
    out.train_seconds += feature_seconds
    out.backbone_params = count_params(backbone)
    out.backbone = backbone
    out.pretrain_seconds = pre_seconds
    return out


def _check_fine_tune(pre: Preflight, source: str | None) -> None:
    named = pre.config.transfer_source(pre.strategy)
    check_recipe(pre.config.fine_tune, pre.backbone(source), has_old_heads=named is None)


@register_strategy("fine-tune", uses_pretrained=True, argument="source", check=_check_fine_tune)
def fine_tune(ctx: RunContext, source: str | None = None) -> RunOutcome:
    """Pretrained shared layers and a new head, all trained on the target.

    The pretrained layers learn at ``backbone_lr_ratio * lr`` so that the new head's early,
    noisy gradients do not wipe out what pretraining learned. The ``fine-tune`` config
    section picks the recipe (:mod:`polytask.transfer.finetune`): which layers train,
    layer-wise rates, gradual unfreezing, LP-FT, frozen BatchNorm, a regularizer, LoRA.
    """
    target = ctx.prepare(ctx.target, ctx.fraction, source=source)
    backbone, pre_seconds = ctx.pretrained(source)
    seed_everything(ctx.seed)
    model = MultiTaskModel(backbone, [target.task])
    cfg = ctx.config.fine_tune
    old_heads = ctx.pretrained_heads(source) if cfg.regularizer == "lwf" else None
    start = time.perf_counter()
    result = fine_tune_model(model, target, cfg, ctx.config.train, ctx.seed, ctx.callbacks, old_heads=old_heads, augment=ctx.augment(source))
    out = _outcome(ctx, model, target, result)
    out.train_seconds = time.perf_counter() - start
    out.pretrain_seconds = pre_seconds
    return out


def pretrain(ctx: RunContext) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], float]:
    """Shared layers trained jointly on every task except the target (a head each).

    The other targets at the run's fraction (``ctx.fraction``) and the sources with all of
    their training data: exactly what ``mtl`` trains on besides the target itself, so
    transfer and multi-task learning see the same data. Selects the epoch with the lowest
    mean validation loss. Returns the backbone's and the heads' state dicts and the
    seconds it took.
    """
    targets = set(ctx.config.targets)
    data = {n: ctx.prepare(n, ctx.fraction if n in targets else 1.0) for n in ctx.tasks if n != ctx.target}
    seed_everything(ctx.seed)
    model = MultiTaskModel(ctx.new_backbone(ctx.input_shape), [d.task for d in data.values()])
    result = fit(model, data, ctx.config.train, ctx.seed, select="loss", callbacks=ctx.callbacks, augment=ctx.augment(None))
    return model.backbone.state_dict(), model.heads.state_dict(), result.seconds


from polytask.transfer import domain_adapt as _domain_adapt  # noqa: E402,F401  (registers domain-adapt)

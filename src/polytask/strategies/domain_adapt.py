"""Unsupervised domain adaptation as a study strategy: ``domain-adapt:<method>``.

A target task ``T`` whose config has ``unlabeled:`` is adapted to. The strategy trains one
model, ``MultiTaskModel(backbone, [T])``, through the one engine:

- **Labelled data** are the study's ``role: source`` tasks with ``T``'s kind and number of
  classes (one label space), *pooled* into one labelled set: their training rows (all of
  them) are the engine's batches, their validation rows its validation split. ``T``'s head
  is trained on those source labels. No such source is a one-line :class:`ConfigError`.
- **Unlabelled target inputs**: ``unlabeled: true`` takes ``T``'s own training inputs, after
  the run's (seeded, label-stratified, shared with every strategy) validation carve and
  ``fraction`` subsample; the strategy never reads ``T``'s training labels, and no loss or
  selection sees them. ``unlabeled: {builtin|npz|csv ...}`` loads separate inputs (their
  training split; any labels are ignored), takes a seeded unstratified ``fraction`` of them
  and scales them with their own statistics (the rule :func:`polytask.data.prepare.prepare_task`
  applies to every task). Either way the run's ``fraction`` applies to the *unlabelled
  target inputs*; the labelled sources always use all of their rows.
- **Backbone**: ``model.backbone``, with its pretrained weights when it has them (else a
  random initialization), like ``mtl``.
- **The adaptation loss** (:class:`DomainAdaptPenalty`, the engine's ``penalty``): after the
  engine's forward on a source batch, the penalty reads the source features ``f_s`` from a
  forward hook on ``model.backbone``, draws an unlabelled target batch from its own
  ``torch.Generator`` (seeded from the run's seed, so batches are reproducible), computes
  ``logits_s = head(f_s)``, ``f_t = backbone(x_t)``, ``logits_t = head(f_t)`` and returns
  ``adapter.loss(f_s, f_t, logits_s, logits_t, progress, y_s=y)`` with
  ``progress = step / total_steps``. The target batch has its own forward, so in training
  BatchNorm normalizes each domain with its own batch statistics. Methods are those of
  :data:`polytask.methods.adaptation.ADAPTERS`, hyperparameters from ``domain-adapt: {<method>: {...}}``.
  Whatever a method trains besides the model (discriminators, MCD's two extra classifiers)
  lives in the adapter and is optimized through ``trainable_parameters()``; predictions
  always come from the model's own head (for MCD too, not from its two classifiers).
- ``source-only``: no adaptation loss (the baseline every method is compared with).
  ``adabn``: source-only training, then :func:`~polytask.methods.adaptation.adabn_recalibrate`
  with the unlabelled target inputs, before every validator score and before evaluation.
  Both train with ``penalty=None``, so their training runs are identical for a seed.
- **Model selection without target labels**: the engine's ``select`` is a
  :class:`ValidatorSelection` scoring the model after each epoch with the configured
  validator (``domain-adapt: {validator: dev}``; :mod:`polytask.methods.adaptation.validators`):
  ``source-val`` on the source validation split; ``entropy``, ``im``, ``snd`` on target
  logits; ``dev`` on features of source training rows, the target inputs and the source
  validation rows, with per-sample source validation losses. Source training rows and
  target inputs are capped at :data:`VALIDATOR_ROWS` seeded rows each (fixed for the run).
  Target *test* labels are never used to select (TLlib's examples do). The best epoch's
  state is restored; ``test`` is ``T``'s test metric of that checkpoint and ``val`` its
  validation metric.
- **Oracle gap**: ``T``'s validation labels exist, so each epoch also records ``T``'s
  validation metric, for evaluation only. ``RunOutcome.extra`` holds ``method``,
  ``validator``, ``chosen_epoch``, ``target_val_at_chosen``, ``target_val_oracle`` (the best
  over epochs), ``oracle_epoch``, ``oracle_gap`` (oracle minus chosen, in the metric's
  direction: never negative) and the per-epoch ``validator_scores`` and ``target_val_by_epoch``.

No augmentation is applied (the source's augmenter would need the target's name; the
comparison between methods stays on equal terms). Regression tasks cannot be adapted
(the methods need class logits); a binary task's logit ``z`` is read as the two logits ``[0, z]``.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from polytask.core.errors import ConfigError
from polytask.core.tasks import Task, higher_is_better
from polytask.data.loaders import load_data
from polytask.data.prepare import PreparedTask, Split, as_model_input, standardize
from polytask.data.rows import as_tensor
from polytask.data.splits import rng_for, subsample
from polytask.methods.adaptation import ADAPTERS, Adapter, adabn_recalibrate, create_adapter
from polytask.methods.adaptation.validators import score
from polytask.methods.architectures.multitask import MultiTaskModel, count_params
from polytask.methods.backbones import is_pretrained
from polytask.strategies.base import RunContext, RunOutcome, register_strategy
from polytask.training.engine import EVAL_BATCH, evaluate, fit, predict, seed_everything

__all__ = ["SOURCE_ONLY", "VALIDATOR_ROWS", "DomainAdaptPenalty", "ValidatorSelection", "domain_adapt", "method_names"]

SOURCE_ONLY = "source-only"
# Rows of source training features and of target inputs a validator sees per epoch.
VALIDATOR_ROWS = 1000


def method_names() -> list[str]:
    """What ``domain-adapt:`` takes: every registered adapter and ``source-only``."""
    return [*ADAPTERS.names(), SOURCE_ONLY]


def class_logits(out: Tensor) -> Tensor:
    """A head's output as ``[N, C]`` class logits: a binary logit ``z`` becomes ``[0, z]``."""
    return torch.cat([torch.zeros_like(out), out], dim=1) if out.shape[1] == 1 else out


def class_targets(y: Tensor) -> Tensor:
    """Encoded targets as class indices ``[N]`` (binary targets are ``[N, 1]`` floats)."""
    return y.reshape(len(y)).long() if y.is_floating_point() else y


def _classes(task: Task) -> int:
    return 2 if task.kind == "binary" else task.n_outputs


class DomainAdaptPenalty(nn.Module):
    """The engine ``penalty`` of one domain adaptation method (see the module docstring).

    Args:
        adapter: the method (:func:`~polytask.methods.adaptation.create_adapter`).
        target_x: unlabelled target inputs, as the backbone reads them.
        batch_size: rows per target batch (capped at ``len(target_x)``).
        seed: seeds the generator that shuffles the target batches.
    """

    def __init__(self, adapter: Adapter, target_x: Tensor, batch_size: int, seed: int):
        super().__init__()
        self.adapter = adapter
        self.target_x = target_x
        self.batch_size = batch_size
        self.seed = seed
        self._gen: torch.Generator | None = None
        self._queue: list[Tensor] = []
        self._handle = None
        self._captured: Tensor | None = None
        self._step, self._total = 0, 1

    def next_indices(self) -> Tensor:
        """Row indices of the next target batch: seeded reshuffles, no batch of one row."""
        if self._gen is None:
            self._gen = torch.Generator().manual_seed(int(rng_for(self.seed, "domain-adapt", "target-batches").integers(2**62)))
        if not self._queue:
            perm = torch.randperm(len(self.target_x), generator=self._gen)
            chunks = list(perm.split(max(2, min(self.batch_size, len(self.target_x)))))
            if len(chunks) > 1 and len(chunks[-1]) < 2:
                chunks.pop()  # BatchNorm and covariance-based losses need two rows
            self._queue = chunks
        return self._queue.pop(0)

    def attach(self, model: nn.Module) -> DomainAdaptPenalty:
        """Hook ``model.backbone`` to keep the features of the last training forward."""
        if len(self.target_x) < 2:
            raise ConfigError(f"domain adaptation needs at least 2 unlabelled target inputs, got {len(self.target_x)}")
        if self._handle is not None:
            self._handle.remove()
        self._handle = model.backbone.register_forward_hook(self._capture)
        return self

    def _capture(self, module: nn.Module, inputs, output: Tensor) -> None:
        # Evaluation and validator passes must not replace the training features.
        if module.training and torch.is_grad_enabled():
            self._captured = output

    def begin(self, total_steps: int) -> None:
        """The engine's step budget: ``progress`` runs from 0 to 1 over it."""
        self._step, self._total = 0, max(1, total_steps)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The method's own trainable modules (discriminators, extra classifiers)."""
        return [p for p in self.adapter.parameters() if p.requires_grad]

    def forward(self, model: nn.Module, x: Tensor, task: str, y: Tensor | None = None) -> Tensor:
        """Adaptation loss for the source batch ``x`` (labels ``y``) the model just ran on."""
        f_s = self._captured
        if f_s is None or f_s.shape[0] != x.shape[0]:
            raise RuntimeError("DomainAdaptPenalty: call it right after the model's training forward on x (after attach(model))")
        head = model.heads[task]
        x_t = self.target_x[self.next_indices()].to(x.device)
        f_t = model.backbone(x_t)
        self._captured = None  # one capture serves one call; the target forward is not a source batch
        progress = min(self._step / self._total, 1.0)
        self._step += 1
        y_s = None if y is None else class_targets(y)
        return self.adapter.loss(f_s, f_t, class_logits(head(f_s)), class_logits(head(f_t)), progress, y_s=y_s)


@torch.no_grad()
def _forward(model: MultiTaskModel, x: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """Backbone features and class logits of ``x`` (eval mode, in chunks)."""
    was = model.training
    model.eval()
    feats = torch.cat([model.backbone(c) for c in x.split(EVAL_BATCH)])
    model.train(was)
    return feats, class_logits(model.heads[task](feats))


class ValidatorSelection:
    """The engine's ``select``: a validator score per epoch, and the target's validation metric.

    Args:
        validator: a name in :data:`polytask.methods.adaptation.validators.VALIDATORS`.
        task: the target task (its name keys the model's head).
        source: the pooled labelled source data.
        target_x: unlabelled target inputs.
        target: the target's prepared splits; only ``val`` is read, for the oracle record.
        seed: fixes the capped subsamples of source training rows and target inputs.
        recalibrate: score a copy whose BatchNorm statistics come from ``target_x`` (AdaBN).

    Attributes:
        scores_: validator score per epoch (higher is better).
        target_val_: the target's validation metric per epoch (never used to select).
    """

    def __init__(self, validator: str, task: Task, source: PreparedTask, target_x: Tensor, target: PreparedTask, seed: int, recalibrate: bool = False):
        self.validator = validator
        self.task = task
        self.source = source
        self.target_x = target_x
        self.target = target
        self.seed = seed
        self.recalibrate = recalibrate
        self.scores_: list[float] = []
        self.target_val_: list[float] = []

    def _rows(self, n: int, key: str) -> np.ndarray:
        if n <= VALIDATOR_ROWS:
            return np.arange(n)
        return np.sort(rng_for(self.seed, "domain-adapt", key).choice(n, VALIDATOR_ROWS, replace=False))

    def prepared(self, model: MultiTaskModel) -> MultiTaskModel:
        """The model as it is scored and evaluated: recalibrated on target for AdaBN."""
        if not self.recalibrate:
            return model
        twin = copy.deepcopy(model)
        adabn_recalibrate(twin.backbone, self.target_x)  # BatchNorm lives in the backbone
        return twin

    def arrays(self, model: MultiTaskModel) -> dict[str, Any]:
        """Every array a validator may read (:mod:`polytask.methods.adaptation.validators`)."""
        name = self.task.name
        src_train = self.source.train.x[self._rows(len(self.source.train), "source-rows")]
        tgt = self.target_x[self._rows(len(self.target_x), "target-rows")]
        f_tr, _ = _forward(model, src_train, name)
        f_t, logits_t = _forward(model, tgt, name)
        f_va, logits_va = _forward(model, self.source.val.x, name)
        y_va = class_targets(self.source.val.y)
        return {
            "logits_source_val": logits_va,
            "y_source_val": y_va,
            "logits_target": logits_t,
            "f_source_train": f_tr,
            "f_target": f_t,
            "f_source_val": f_va,
            "loss_source_val": F.cross_entropy(logits_va, y_va, reduction="none"),
        }

    def __call__(self, model: MultiTaskModel) -> float:
        scored = self.prepared(model)
        # Capped arrays: BLAS threads cost more than they save here (DEV's L-BFGS fit).
        with threadpool_limits(1):
            value = score(self.validator, **self.arrays(scored))
        self.scores_.append(value)
        self.target_val_.append(evaluate(scored, self.target, self.target.val)[0])
        return value


def matching_sources(config, tasks: dict[str, Task], target: str) -> list[str]:
    """The study's source tasks in ``target``'s label space (its kind and number of classes)."""
    task = tasks[target]
    return [
        n
        for n, t in config.tasks.items()
        if t.role == "source" and n != target and tasks[n].kind == task.kind and _classes(tasks[n]) == _classes(task)
    ]


def check_domain_adapt(config, tasks: dict[str, Task], method: str | None) -> None:
    """Raise :class:`ConfigError` when ``domain-adapt:<method>`` cannot run on every target.

    Checked before a study runs anything: the method and its hyperparameters, and per
    target its unlabelled inputs, classes, and a source task in its label space.
    """
    if method not in method_names():
        raise ConfigError(f"strategy 'domain-adapt' needs a method: domain-adapt:<method> with one of {', '.join(method_names())}")
    for target in config.targets:
        task = tasks[target]
        if config.tasks[target].unlabeled in (None, False):
            raise ConfigError(f"domain-adapt needs unlabelled target inputs: set 'unlabeled:' on task '{target}' (true, or a data source)")
        if task.kind == "regression":
            raise ConfigError(f"domain-adapt: target '{target}' is a regression task; the methods need classes")
        if not matching_sources(config, tasks, target):
            raise ConfigError(f"domain-adapt: target '{target}' has {_classes(task)} classes but no task with role 'source' has as many")
        if method not in (SOURCE_ONLY, "adabn"):
            try:
                create_adapter(method, feature_dim=4, n_classes=_classes(task), **config.domain_adapt.hparams(method))
            except (TypeError, ValueError) as e:
                raise ConfigError(f"domain-adapt.{method}: {e}") from None


def _pooled_sources(ctx: RunContext, task: Task) -> tuple[list[str], PreparedTask]:
    """The study's source tasks in ``task``'s label space, pooled into one labelled set."""
    names = matching_sources(ctx.config, ctx.tasks, ctx.target)
    parts = [ctx.prepare(n, 1.0) for n in names]

    def pool(split: str) -> Split:
        splits = [getattr(p, split) for p in parts]
        return Split(torch.cat([as_tensor(s.x) for s in splits]), torch.cat([s.y for s in splits]))

    return names, PreparedTask(task, pool("train"), pool("val"), pool("test"))


def _unlabeled_inputs(ctx: RunContext, target: PreparedTask) -> Tensor:
    """The unlabelled target inputs of this run (see the module docstring)."""
    spec = ctx.config.tasks[ctx.target].unlabeled
    if spec is True:
        return as_tensor(target.train.x)  # inputs only: the labels of these rows are never read
    raw = load_data(spec)
    x = as_model_input(raw.x_train, ctx.config.model.image_size)
    if tuple(x.shape[1:]) != tuple(target.train.x.shape[1:]):
        raise ConfigError(f"task '{ctx.target}': unlabeled inputs have shape {tuple(x.shape[1:])}, its own inputs {tuple(target.train.x.shape[1:])}")
    idx = subsample(np.zeros(len(x)), ctx.fraction, rng_for(ctx.seed, ctx.target, "unlabeled"), stratify=False)
    (x,) = standardize(x[torch.as_tensor(idx)])
    return x


def _check(pre, method: str | None) -> None:
    check_domain_adapt(pre.config, pre.tasks, method)


@register_strategy("domain-adapt", argument="method", check=_check, reads_target_labels=False)
def domain_adapt(ctx: RunContext, method: str | None = None) -> RunOutcome:
    """Unsupervised domain adaptation from labelled sources to the target's unlabelled inputs.

    ``method``: a registered adapter (``domain-adapt:dann``) or ``source-only``. See the
    module docstring for the data, training, selection and what ``extra`` records.
    :func:`check_domain_adapt` has refused what cannot run before the study started.
    """
    target = ctx.prepare(ctx.target, ctx.fraction)
    task = target.task
    target_x = _unlabeled_inputs(ctx, target)
    sources, source = _pooled_sources(ctx, task)
    cfg = ctx.config.domain_adapt

    seed_everything(ctx.seed)
    new = functools.partial(ctx.new_backbone, ctx.input_shape, pretrained=is_pretrained(ctx.config.model.backbone))
    model = MultiTaskModel(new(), [task])
    penalty = None
    if method not in (SOURCE_ONLY, "adabn"):
        adapter = create_adapter(method, feature_dim=model.backbone.out_features, n_classes=_classes(task), **cfg.hparams(method))
        penalty = DomainAdaptPenalty(adapter, target_x, ctx.config.train.batch_size, ctx.seed)
    selection = ValidatorSelection(cfg.validator, task, source, target_x, target, ctx.seed, recalibrate=method == "adabn")
    result = fit(model, {ctx.target: source}, ctx.config.train, ctx.seed, select=selection, callbacks=ctx.callbacks, penalty=penalty)

    final = selection.prepared(model)  # the restored best state, recalibrated for AdaBN
    test = predict(final, target, target.test)
    val, _ = evaluate(final, target, target.val)
    sign = 1.0 if higher_is_better(task.metric) else -1.0
    history = selection.target_val_
    chosen = history[result.best_epoch - 1]
    oracle_epoch = int(np.argmax([sign * v for v in history])) + 1
    oracle = history[oracle_epoch - 1]
    extra = {
        "method": method,
        "validator": cfg.validator,
        "sources": sources,
        "chosen_epoch": result.best_epoch,
        "target_val_at_chosen": chosen,
        "target_val_oracle": oracle,
        "oracle_epoch": oracle_epoch,
        "oracle_gap": sign * (oracle - chosen),
        "source_val_at_chosen": result.best_val[ctx.target],
        "validator_scores": list(selection.scores_),
        "target_val_by_epoch": list(history),
    }
    own = count_params(penalty.adapter, trainable_only=True) if penalty is not None else 0
    return RunOutcome(
        test=test.metric,
        val=val,
        train_seconds=result.seconds,
        trainable_params=count_params(model, trainable_only=True) + own,
        backbone_params=count_params(model.backbone),
        head_params=count_params(model.heads[ctx.target]),
        epochs=result.epochs,
        best_epoch=result.best_epoch,
        history=result.history,
        # The target's labels this run used: none. Its validation labels are read only to
        # measure the oracle gap afterwards, never to train or to select.
        train_labels=0,
        val_labels=0,
        extra=extra,
        backbone=final.backbone,
        model=final,
        predictions=test,
    )

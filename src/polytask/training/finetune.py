"""The ``fine-tune`` recipe: from a config section to engine calls.

:func:`fine_tune_model` trains a ``MultiTaskModel(pretrained backbone, [target head])`` on
the target through the one engine, following :class:`~polytask.config.FineTuneConfig`:

1. LoRA adapters replace full fine-tuning of the backbone (``lora``), or the last
   ``layers`` stages train and the rest stay frozen; BatchNorm statistics stay fixed with
   ``freeze_bn``.
2. With ``lp_ft`` the head first trains alone on the frozen backbone for ``lp_epochs``
   (the linear probe), then everything trains from that head.
3. The backbone learns at ``backbone_lr_ratio * lr`` (top stage) with ``lr_decay`` per
   stage below it; new parameters (head, LoRA adapters) at ``lr``; ``unfreeze: gradual``
   adds one stage per ``unfreeze_every`` epochs from the top.
4. A regularizer (``l2-sp``, ``delta``, ``bss``, ``lwf``) adds its penalty each step.
   It measures the distance to the model fine-tuning starts from: after the linear probe
   when there is one (so DELTA's channel attention reads a trained head).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial
from typing import Any

from torch import nn

from polytask.config import FineTuneConfig, TrainConfig
from polytask.core.errors import ConfigError
from polytask.core.targets import task_loss
from polytask.data.prepare import PreparedTask
from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.methods.finetuning.lora import apply_lora, merge_lora
from polytask.methods.finetuning.recipes import GradualUnfreeze, freeze_batchnorm, layerwise_lr_groups, select_trainable
from polytask.methods.finetuning.regularizers import create_regularizer
from polytask.training.engine import FitResult, fit


def _param_groups(model: MultiTaskModel, cfg: FineTuneConfig, train: TrainConfig, new: list[nn.Parameter]) -> list[dict[str, Any]]:
    """Backbone groups (decaying rates when asked), then the new parameters at ``lr``."""
    lr, ratio = train.lr, train.backbone_lr_ratio
    fresh = {id(p) for p in new}
    if cfg.lr_decay < 1.0:
        # layerwise_lr_groups puts the top stage at base * decay: base = lr * ratio / decay
        # gives the top stage lr * ratio, the one below lr * ratio * decay, and so on.
        groups = layerwise_lr_groups(model, lr * ratio / cfg.lr_decay, cfg.lr_decay, head_lr=lr)
        for g in groups:
            g["params"] = [p for p in g["params"] if id(p) not in fresh]
        return [g for g in groups if g["params"] and g.get("name") != "heads"] + [{"params": new, "lr": lr}]
    backbone = [p for p in model.backbone.parameters() if id(p) not in fresh]
    return [{"params": backbone, "lr": lr * ratio}, {"params": new, "lr": lr}]


def check_recipe(cfg: FineTuneConfig, backbone: nn.Module | None, has_old_heads: bool) -> None:
    """Raise :class:`ConfigError` when the recipe cannot apply.

    A study calls it before it runs anything, with a ``backbone`` on which LoRA and the
    layer selection are tried (on a copy); :func:`fine_tune_model` calls it without one,
    since applying them to the real model raises the same errors.

    Args:
        cfg: the recipe.
        backbone: the layers fine-tuning starts from (only their structure is read).
        has_old_heads: whether the heads of the tasks those layers learned are at hand
            (in-study pretraining keeps them; named backbones come without).
    """
    if cfg.regularizer == "lwf" and not has_old_heads:
        raise ConfigError("fine-tune regularizer 'lwf' needs the heads of the tasks the backbone was trained on; named pretrained backbones come without")
    if cfg.regularizer == "delta" and cfg.hparams("delta").get("attention", True) and not cfg.lp_ft:
        raise ConfigError("'delta' channel attention needs a trained head to rate channels: set fine-tune lp_ft: true, or delta: {attention: false}")
    if cfg.unfreeze == "gradual" and cfg.lora is not None:
        raise ConfigError("unfreeze: gradual trains the backbone's own layers; with lora only the adapters train: use one of them")
    if backbone is None:
        return
    trial = copy.deepcopy(backbone)
    if cfg.lora is not None:
        apply_lora(trial, **cfg.lora)
    elif cfg.layers != "all":
        select_trainable(trial, cfg.layers)


def fine_tune_model(
    model: MultiTaskModel,
    target: PreparedTask,
    cfg: FineTuneConfig,
    train: TrainConfig,
    seed: int,
    callbacks: Sequence[Any] = (),
    old_heads: nn.ModuleDict | None = None,
    augment: dict[str, Any] | None = None,
) -> FitResult:
    """Fine-tune ``model`` (pretrained backbone, new head) on ``target``; returns the last fit.

    Args:
        model: the model to train in place; it ends in its best (validation) state, with
            LoRA adapters merged into the backbone's weights.
        target: the target task's tensors.
        cfg: the recipe.
        train: the engine's rules; ``backbone_lr_ratio`` scales the backbone's rate.
        seed: the run's seed.
        callbacks: engine callbacks (progress).
        old_heads: heads of the tasks the backbone was pretrained on (``lwf`` needs them).
        augment: per-task augmenters for the engine.

    Raises:
        ConfigError: a recipe that cannot apply (``lwf`` without the old heads, ``delta``
            attention without a trained head).
    """
    check_recipe(cfg, None, old_heads is not None)
    name = target.task.name
    data = {name: target}
    head_params = list(model.heads.parameters())
    new = list(head_params)
    if cfg.lora is not None:
        apply_lora(model.backbone, **cfg.lora)
        new += [p for p in model.backbone.parameters() if p.requires_grad]
    elif cfg.layers != "all":
        select_trainable(model.backbone, cfg.layers)
    if cfg.freeze_bn:
        freeze_batchnorm(model.backbone)
    attention = cfg.regularizer == "delta" and cfg.hparams("delta").get("attention", True)

    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if cfg.lp_ft:
        # The linear probe: the head alone on the frozen backbone.
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        probe = train.model_copy(update={"max_epochs": cfg.lp_epochs})
        fit(model, data, probe, seed, select=name, param_groups=[{"params": head_params}], callbacks=callbacks, augment=augment)
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)

    penalty = None
    if cfg.regularizer:
        # The start: the pretrained backbone with the (probed) head, or LwF's old heads.
        start = copy.deepcopy(model)
        if cfg.regularizer == "lwf":
            start.heads = copy.deepcopy(old_heads)
        penalty = create_regularizer(cfg.regularizer, start, **cfg.hparams(cfg.regularizer))
        if attention:
            sample = target.train.x[: train.batch_size], target.train.y[: train.batch_size]
            penalty.fit_attention(*sample, partial(task_loss, target.task), name)

    steps = list(callbacks)
    if cfg.unfreeze == "gradual":
        steps.append(GradualUnfreeze(model.backbone, every=cfg.unfreeze_every))
    groups = _param_groups(model, cfg, train, new)
    result = fit(model, data, train, seed, select=name, param_groups=groups, callbacks=steps, penalty=penalty, augment=augment)
    if penalty is not None and hasattr(penalty, "detach"):
        penalty.detach()
    if cfg.lora is not None:
        merge_lora(model.backbone)
    return result

"""``fine-tune``: pretrained shared layers and a new head, all trained on the target."""

from __future__ import annotations

import time

from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.strategies.base import Preflight, RunContext, RunOutcome, outcome, register_strategy, ssl_source, transfer_source
from polytask.training.engine import seed_everything
from polytask.training.finetune import check_recipe, fine_tune_model


def _check_fine_tune(pre: Preflight, source: str | None) -> None:
    named = transfer_source(pre.config, pre.strategy)
    in_study = named is None and ssl_source(pre.config, pre.strategy) is None  # the only start with old tasks' heads
    check_recipe(pre.config.fine_tune, pre.backbone(source), has_old_heads=in_study)


@register_strategy("fine-tune", uses_pretrained=True, argument="source", check=_check_fine_tune)
def fine_tune(ctx: RunContext, source: str | None = None) -> RunOutcome:
    """Pretrained shared layers and a new head, all trained on the target.

    The pretrained layers learn at ``backbone_lr_ratio * lr`` so that the new head's early,
    noisy gradients do not wipe out what pretraining learned. The ``fine-tune`` config
    section picks the recipe (:mod:`polytask.training.finetune`): which layers train,
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
    out = outcome(ctx, model, target, result)
    out.train_seconds = time.perf_counter() - start
    out.pretrain_seconds = pre_seconds
    return out

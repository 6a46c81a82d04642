"""``feature-extraction``: frozen pretrained shared layers and a new head."""

from __future__ import annotations

from polytask.core.digest import state_digest
from polytask.data.prepare import PreparedTask, Split
from polytask.data.rows import inputs_digest
from polytask.methods.architectures.multitask import FeatureBackbone, MultiTaskModel, count_params, feature_statistics
from polytask.strategies.base import RunContext, RunOutcome, register_strategy, train_and_test
from polytask.strategies.features import features_of, stay_in_eval
from polytask.training.engine import seed_everything


@register_strategy("feature-extraction", uses_pretrained=True, argument="source")
def feature_extraction(ctx: RunContext, source: str | None = None) -> RunOutcome:
    """Frozen pretrained shared layers; a new head trained on features computed once.

    The head reads the features standardized with the training rows' statistics
    (:class:`~polytask.methods.architectures.multitask.FeatureBackbone`). When the target's inputs are
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
        backbone.register_forward_pre_hook(stay_in_eval)
        mean, std = feature_statistics(features_of(backbone, target.train))
        seed_everything(ctx.seed)
        model = MultiTaskModel(FeatureBackbone(backbone.out_features, mean, std, inner=backbone), [target.task])
        out = train_and_test(ctx, model, {ctx.target: target}, target, param_groups=[{"params": list(model.heads.parameters())}], augment=augment)
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
        features, seconds = ctx.feature_cache.get((layers, inputs_digest(split.x)), lambda s=split: features_of(backbone, s))
        splits.append(Split(features, split.y))
        feature_seconds += seconds
    cached = PreparedTask(target.task, *splits)
    seed_everything(ctx.seed)
    head_model = MultiTaskModel(FeatureBackbone(backbone.out_features, *feature_statistics(splits[0].x)), [target.task])
    out = train_and_test(ctx, head_model, {ctx.target: cached}, cached, augment={})
    # The model to keep reads inputs: the frozen layers, the same feature scaling, the head.
    out.model = MultiTaskModel(FeatureBackbone(backbone.out_features, *feature_statistics(splits[0].x), inner=backbone), [target.task])
    out.model.heads.load_state_dict(head_model.heads.state_dict())
    out.train_seconds += feature_seconds
    out.backbone_params = count_params(backbone)
    out.backbone = backbone
    out.pretrain_seconds = pre_seconds
    return out

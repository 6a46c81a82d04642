"""``scratch``: the target alone from a random initialization; ``aa-control``: the same
with its own random stream, an A/A control."""

from __future__ import annotations

from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.strategies.base import RunContext, RunOutcome, outcome, register_strategy, train_and_test
from polytask.training.engine import fit, seed_everything


@register_strategy("scratch")
def scratch(ctx: RunContext) -> RunOutcome:
    """The target task alone, from a random initialization."""
    target = ctx.prepare(ctx.target, ctx.fraction)
    seed_everything(ctx.seed)
    model = MultiTaskModel(ctx.new_backbone(ctx.input_shape), [target.task])
    return train_and_test(ctx, model, {ctx.target: target}, target)


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
    return outcome(ctx, model, target, result)

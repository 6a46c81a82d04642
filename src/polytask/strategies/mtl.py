"""``mtl``: one model for every target; ``mtl-per-target``: a multi-task model per target."""

from __future__ import annotations

import functools

from polytask.core.targets import labelled_rows
from polytask.data.prepare import PreparedTask
from polytask.methods.architectures.base import build_multitask_model
from polytask.methods.backbones import is_pretrained
from polytask.methods.weighting import create as create_weighting
from polytask.methods.weighting import uses_rep_grad
from polytask.strategies.base import ALL_TARGETS, RunContext, RunOutcome, outcome, register_strategy, train_and_test
from polytask.training.engine import fit, seed_everything
from polytask.training.sampling import task_probabilities


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
        sizes = {n: int(labelled_rows(d.task, d.train.y).sum()) for n, d in data.items()}
        sampling = task_probabilities(sizes, cfg.sampling, cfg.temperature)
    seed_everything(ctx.seed)
    arch = ctx.config.model
    new = functools.partial(ctx.new_backbone, ctx.input_shape, pretrained=is_pretrained(arch.backbone))
    model = build_multitask_model(arch.architecture, new, ctx.input_shape, [d.task for d in data.values()], **arch.architecture_options())
    return model, {"weighting": method, "sampling": sampling, "rep_grad": uses_rep_grad(name, cfg.rep_grad)}


@register_strategy("mtl", argument="weighting", scope=ALL_TARGETS)
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
    rep_grad = uses_rep_grad(weighting or ctx.config.mtl.weighting, ctx.config.mtl.rep_grad)
    data = _multitask_data(ctx, {n: ctx.fraction if n in ctx.targets else 1.0 for n in ctx.tasks}, rep_grad)
    model, options = _multitask_model(ctx, data, weighting)
    result = fit(model, data, ctx.config.train, ctx.seed, select=list(ctx.targets), callbacks=ctx.callbacks, augment=ctx.augment(None), **options)
    return {t: outcome(ctx, model, data[t], result, t) for t in ctx.targets}


@register_strategy("mtl-per-target", argument="weighting")
def mtl_per_target(ctx: RunContext, weighting: str | None = None) -> RunOutcome:
    """A multi-task model for one target: the other tasks, in full, help this one target.

    The target at the run's fraction, every other task (other targets included) with all
    of its training data; the epoch is chosen on the target's validation metric. One
    model per target, so it answers "does joint training help this task?" rather than
    "what does one shared model cost?" (that is ``mtl``).
    """
    rep_grad = uses_rep_grad(weighting or ctx.config.mtl.weighting, ctx.config.mtl.rep_grad)
    data = _multitask_data(ctx, {n: ctx.fraction if n == ctx.target else 1.0 for n in ctx.tasks}, rep_grad)
    model, options = _multitask_model(ctx, data, weighting)
    return train_and_test(ctx, model, data, data[ctx.target], **options)

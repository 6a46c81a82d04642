"""In-study pretraining: the shared layers transfer strategies start from, trained on every
task but the target, or self-supervised on unlabelled inputs (:func:`pretrain_ssl`)."""

from __future__ import annotations

import torch

from polytask.config import SSLSourceConfig
from polytask.core.tasks import Task
from polytask.data.prepare import PreparedTask, Split
from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.methods.selfsupervised import build_objective
from polytask.strategies.base import RunContext
from polytask.training.engine import fit, seed_everything


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


def pretrain_ssl(ctx: RunContext, source: SSLSourceConfig, train_x: torch.Tensor, val_x: torch.Tensor, augment=None) -> tuple[dict[str, torch.Tensor], float]:
    """Shared layers trained without labels by ``source``'s objective
    (:mod:`polytask.methods.selfsupervised`) on inputs ``train_x``, the epoch chosen on the
    objective's loss on ``val_x``, through the engine. Returns the backbone's state dict and
    the seconds it took.

    Args:
        ctx: the run the layers are for (its seed, input shape, backbone and settings).
        source: the objective and its settings.
        train_x, val_x: model inputs (already scaled as the runs' are); never a target's
            validation or test rows.
        augment: the augmenter making SimCLR's views.
    """
    seed_everything(ctx.seed)
    backbone = ctx.new_backbone(ctx.input_shape)
    objective = build_objective(
        source.pretrain,
        backbone,
        ctx.input_shape,
        mask_ratio=source.mask_ratio,
        temperature=source.temperature,
        projection=source.projection,
        augment=augment,
        seed=ctx.seed,
    )
    y_train, y_val = objective.targets(train_x), objective.targets(val_x)
    task = Task("self-supervised", "regression", int(y_train.shape[1]))
    data = {task.name: PreparedTask(task, Split(train_x, y_train), Split(val_x, y_val), Split(val_x, y_val))}
    budget = {k: v for k in ("max_epochs", "lr", "batch_size") if (v := getattr(source, k)) is not None}
    result = fit(objective, data, ctx.config.train.model_copy(update=budget), ctx.seed, select="loss", callbacks=ctx.callbacks)
    return backbone.state_dict(), result.seconds

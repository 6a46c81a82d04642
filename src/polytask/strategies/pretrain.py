"""In-study pretraining: the shared layers transfer strategies start from, trained on every
task but the target."""

from __future__ import annotations

import torch

from polytask.methods.architectures.multitask import MultiTaskModel
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

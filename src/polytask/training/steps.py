"""One training step's losses and gradients, as :func:`polytask.training.engine.fit` takes them.

Losses of tasks sharing one backbone pass, one task's (augmented, penalized) loss, and
the backward pass: summed, weighted by a loss-weighting method, or with the per-task
gradients of the shared layers (or of the shared representation, ``rep_grad``) combined
by a gradient method.
"""

from __future__ import annotations

import contextlib
import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from polytask.core.errors import DivergedError
from polytask.core.targets import task_loss
from polytask.data.augment import augmented_loss
from polytask.data.prepare import PreparedTask
from polytask.data.rows import same_inputs
from polytask.methods.weighting.base import Weighting
from polytask.training.distributed import Shards
from polytask.training.taskgrads import assign_gradient, task_gradients


def _shared_losses(model: nn.Module, data: dict[str, PreparedTask], group: list[str], idx: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Losses of tasks that read the same inputs, from one backbone pass over the union of
    their rows (one batch when they drew the same rows); each task's loss reads its rows."""
    first = idx[group[0]]
    same = all(idx[n] is first for n in group)
    union = first if same else torch.unique(torch.cat([idx[n] for n in group]))
    z = model.backbone(data[group[0]].train.x[union])
    heads = [model.heads[n] for n in group]
    if same and all(type(h) is nn.Linear and h.bias is not None for h in heads):
        # One batch for every task: all linear heads in one matrix product (the same
        # numbers as one product per head, without T small ones).
        weight = torch.cat([h.weight for h in heads])
        bias = torch.cat([h.bias for h in heads])
        outs = dict(zip(group, F.linear(z, weight, bias).split([h.out_features for h in heads], dim=1)))
    else:
        outs = {n: model.heads[n](z if same else z[torch.searchsorted(union, idx[n])]) for n in group}
    return {n: task_loss(data[n].task, outs[n], data[n].train.y[idx[n]]) for n in group}


def _shared_params(model: nn.Module, weighting: Weighting | None) -> list[torch.Tensor]:
    if weighting is None or not weighting.requires_grads:
        return []
    if not hasattr(model, "shared_parameters"):
        raise ValueError(f"weighting '{weighting.name}' needs per-task gradients of shared layers, but the model has no shared_parameters()")
    shared = [p for p in model.shared_parameters() if p.requires_grad]
    if not shared:
        raise ValueError(f"weighting '{weighting.name}' balances gradients of shared layers, but this model shares no trainable parameters")
    return shared


# The divergence check reads the running loss sum from the device this often (steps), not
# once per step: on a GPU every read waits for the queued work to finish.
CHECK_EVERY = 32


def check_finite(running: torch.Tensor, epoch: int) -> None:
    """Raise when the running sum of training losses is NaN or infinite."""
    value = running.item()
    if not math.isfinite(value):
        raise DivergedError(f"training loss became {value} at epoch {epoch}")


def _backward(
    losses: list[torch.Tensor],
    weighting: Weighting | None,
    shared: list[torch.Tensor],
    others: list[torch.Tensor],
    scaler: torch.amp.GradScaler | None = None,
    shards: Shards | None = None,
):
    """Fill ``.grad`` for one step; return the summed task loss (a detached tensor) and the
    task weights used.

    ``None`` sums the losses. A loss-weighting method scales them. A gradient method
    combines the per-task gradients of the shared layers, while each head, which only
    its own task's loss reaches, gets its task's plain gradient: balancing is about the
    shared layers, and a constant scale on one head's gradient would be undone by
    AdamW's per-parameter normalization anyway.

    With a loss ``scaler`` (float16), gradients are taken of the scaled losses; a gradient
    method combines them unscaled and in float32 or wider, and the combination is scaled
    back so that the scaler's step unscales every gradient alike (and skips the step when
    one overflowed).

    With ``shards`` (several processes, :mod:`polytask.training.distributed`), ``losses`` are
    this process's shares of the global batch's losses: gradients are summed over the
    processes (per-task gradients before they are combined) and a method reads the global
    task losses.
    """
    if len(losses) == 1 and weighting is None:
        total = losses[0]
    else:
        total = torch.stack(losses).sum()
    scale = (lambda t: scaler.scale(t)) if scaler is not None else (lambda t: t)
    if weighting is None:
        scale(total).backward()
        if shards is not None:
            shards.sum_grads_([*shared, *others])
        return total.detach(), None
    stacked = torch.stack(losses)
    seen = stacked.detach() if shards is None else shards.sum_(stacked.detach().clone())
    if not weighting.requires_grads:
        weights = weighting.weights(seen)
        scale((weights.to(stacked.dtype) * stacked).sum()).backward()
        if shards is not None:
            shards.sum_grads_([*shared, *others])
        return total.detach(), weights
    s = scaler.get_scale() if scaler is not None else 1.0
    grads = task_gradients([scale(loss) for loss in losses], shared)
    if shards is not None:
        shards.sum_(grads)
    if s != 1.0:
        grads = grads.float() / s
    # Only a float16 overflow makes infinities here (the scaler then skips the step, and no
    # method should see them); other precisions skip the check, a read from the device.
    if s != 1.0 and not torch.isfinite(grads).all():
        combined, weights = grads.sum(0), None
    else:
        combined, weights = weighting.combine(grads, seen)
    head_grads = torch.autograd.grad(scale(total), others, allow_unused=True) if others else []
    for p, g in zip(others, head_grads):
        if g is not None:
            p.grad = g
    if shards is not None:
        shards.sum_grads_(others)
    assign_gradient(shared, combined * s if s != 1.0 else combined)
    return total.detach(), weights


def _rep_grad_step(model: nn.Module, x: torch.Tensor, targets: dict[str, PreparedTask], idx: torch.Tensor, weighting: Weighting, cast=contextlib.nullcontext):
    """One step's gradients with the tasks balanced on the shared representation.

    ``z = backbone(x)`` once; each task's gradient with respect to ``z`` (through its
    head only) goes to the method, and the combined gradient flows back through the
    backbone in one backward pass. By the chain rule a combination ``sum_t w_t dL_t/dz``
    gives the backbone ``sum_t w_t dL_t/dtheta``; heads get their own task's gradient.
    """
    with cast():
        z = model.backbone(x[idx])
        rep = z.detach().requires_grad_()
        losses = [task_loss(d.task, model.heads[n](rep), d.train.y[idx]) for n, d in targets.items()]
    stacked = torch.stack(losses)
    grads = []
    for loss in losses:
        (g,) = torch.autograd.grad(loss, rep, retain_graph=True, allow_unused=True)
        grads.append(torch.zeros_like(rep) if g is None else g)
    # Combined in float32 at least, whatever precision the representation was computed in.
    flat = torch.stack(grads).flatten(1)
    combined, weights = weighting.combine(flat if flat.dtype in (torch.float32, torch.float64) else flat.float(), stacked.detach())
    stacked.sum().backward()  # heads' gradients; what reaches ``rep`` is discarded
    z.backward(combined.view_as(z).to(z.dtype))
    return stacked.sum().detach(), weights


def _task_loss(model: nn.Module, d: PreparedTask, name: str, idx: torch.Tensor, augmenter, gen: torch.Generator, penalty) -> torch.Tensor:
    """One task's training loss on one batch: augmented when asked, plus the penalty."""
    x, y = d.train.x[idx], d.train.y[idx]
    if augmenter is None:
        loss = task_loss(d.task, model(x, name), y)
    else:
        aug = augmenter(x, gen)
        x = aug.x
        loss = augmented_loss(partial(task_loss, d.task), model(x, name), y, aug)
    if penalty is not None:
        loss = loss + penalty(model, x, name, y)
    return loss


def _check_rep_grad(model: nn.Module, data: dict[str, PreparedTask], weighting: Weighting | None) -> torch.Tensor:
    """The training inputs every task shares; ValueError when ``rep_grad`` cannot apply."""
    if weighting is None or not weighting.requires_grads:
        name = "summed losses" if weighting is None else f"'{weighting.name}'"
        raise ValueError(f"rep_grad balances per-task gradients of the representation, which {name} never reads: use a gradient method")
    if not (hasattr(model, "backbone") and isinstance(getattr(model, "heads", None), nn.ModuleDict)):
        raise ValueError("rep_grad needs one representation read by every head: a model with .backbone(x) and .heads[task] (architecture 'hard')")
    names = list(data)
    x = data[names[0]].train.x
    for n in names[1:]:
        other = data[n].train.x
        if not same_inputs(other, x):
            raise ValueError(f"rep_grad takes every task's gradient on one shared batch, but tasks '{names[0]}' and '{n}' train on different inputs")
    return x

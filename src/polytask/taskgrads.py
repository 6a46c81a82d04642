"""Per-task gradients of the shared parameters in one batched backward pass.

Gradient-balancing methods need each task's gradient on the shared parameters, ``G`` of
shape ``[T, D]``. Taking them with ``T`` separate backward passes costs ``T`` times the
backward of one loss (and, where the losses are stacked first, each pass also runs through
every other task's head). One call to ``torch.autograd.grad`` with
``is_grads_batched=True`` vectorizes the ``T`` vector-Jacobian products instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor


def task_gradients(losses: Sequence[Tensor], params: Sequence[Tensor], retain_graph: bool = True) -> Tensor:
    """Rows ``G[t] = d losses[t] / d params``, flattened and concatenated.

    Args:
        losses: ``T`` scalar losses sharing one graph.
        params: the shared tensors (parameters, or a shared representation) to differentiate.
        retain_graph: keep the graph for a later backward (e.g. of the heads).

    Returns:
        ``[T, D]`` tensor, ``D`` the total number of elements in ``params``. A parameter a
        loss does not reach contributes zeros.
    """
    stacked = torch.stack(list(losses))
    eye = torch.eye(len(stacked), dtype=stacked.dtype)
    try:
        with warnings.catch_warnings():
            # vmap warns when an op falls back to a slow per-sample loop; the result is still exact.
            warnings.simplefilter("ignore", UserWarning)
            grads = torch.autograd.grad(stacked, list(params), grad_outputs=eye, is_grads_batched=True, retain_graph=retain_graph, allow_unused=True)
    except RuntimeError:
        # Some ops have no batching rule for their backward: one pass per task instead.
        rows = [torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True) for loss in stacked]
        grads = [torch.stack([r[i] if r[i] is not None else torch.zeros_like(p) for r in rows]) for i, p in enumerate(params)]
    flat = [g.reshape(len(stacked), -1) if g is not None else torch.zeros(len(stacked), p.numel()) for g, p in zip(grads, params)]
    return torch.cat(flat, dim=1)


def assign_gradient(params: Sequence[Tensor], flat: Tensor) -> None:
    """Write a flat gradient ``[D]`` into ``p.grad`` of each tensor in ``params`` (in order)."""
    offset = 0
    for p in params:
        n = p.numel()
        g = flat[offset : offset + n].view_as(p).to(p.dtype)
        p.grad = g.clone() if p.grad is None else p.grad + g
        offset += n

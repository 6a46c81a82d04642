"""Per-task gradients of the shared parameters.

Gradient-balancing methods need each task's gradient on the shared parameters, ``G`` of
shape ``[T, D]``. How to get it cheaply depends on the graph:

- In polytask's engine every task has its own batch, so task ``t``'s loss reaches the
  shared layers only through its own batch's activations. One backward pass per task
  then walks disjoint parts of the graph, and the ``T`` passes together cost about one
  backward of the summed loss (``benchmarks/mtl_step.py``: 1.1x at 10 tasks).
- When all tasks share one batch (one trunk forward, several heads), each pass would
  walk the whole trunk again; there ``torch.autograd.grad(..., is_grads_batched=True)``
  vectorizes the ``T`` vector-Jacobian products into one batched pass. On disjoint
  batches the same call costs ``T`` times more (it walks every task's subgraph for every
  row), which is why it is an option and not the default.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor


def task_gradients(losses: Sequence[Tensor], params: Sequence[Tensor], batched: bool = False, retain_graph: bool = True) -> Tensor:
    """Rows ``G[t] = d losses[t] / d params``, flattened and concatenated.

    Args:
        losses: ``T`` scalar losses.
        params: the shared tensors (parameters, or a shared representation) to differentiate.
        batched: one vectorized backward for all rows (fast when the losses share one
            batch) instead of one backward per loss (fast when each has its own batch).
        retain_graph: keep the graph for a later backward (e.g. of the heads).

    Returns:
        ``[T, D]`` tensor, ``D`` the total number of elements in ``params``. A parameter a
        loss does not reach contributes zeros.
    """
    params = list(params)
    t = len(losses)
    if batched:
        vectorized = _vectorized(losses, params, retain_graph)
        if vectorized is not None:
            return vectorized
        # An op without a batching rule for its backward: one pass per task instead.
    rows = []
    for i, loss in enumerate(losses):
        keep = retain_graph or i < t - 1
        grads = torch.autograd.grad(loss, params, retain_graph=keep, allow_unused=True)
        rows.append(torch.cat([g.reshape(-1) if g is not None else torch.zeros(p.numel(), dtype=p.dtype) for g, p in zip(grads, params)]))
    return torch.stack(rows)


def _vectorized(losses: Sequence[Tensor], params: list[Tensor], retain_graph: bool) -> Tensor | None:
    """All rows from one vectorized backward, or ``None`` when an op cannot be batched."""
    stacked = torch.stack(list(losses))
    t = len(stacked)
    try:
        with warnings.catch_warnings():
            # vmap warns when an op falls back to a slow per-sample loop; the result is still exact.
            warnings.simplefilter("ignore", UserWarning)
            eye = torch.eye(t, dtype=stacked.dtype)
            grads = torch.autograd.grad(stacked, params, grad_outputs=eye, is_grads_batched=True, retain_graph=retain_graph, allow_unused=True)
    except RuntimeError:
        return None
    return torch.cat([_flat(g, p, t) for g, p in zip(grads, params)], dim=1)


def _flat(g: Tensor | None, p: Tensor, t: int) -> Tensor:
    return g.reshape(t, -1) if g is not None else torch.zeros(t, p.numel(), dtype=p.dtype)


def assign_gradient(params: Sequence[Tensor], flat: Tensor) -> None:
    """Write a flat gradient ``[D]`` into ``p.grad`` of each tensor in ``params`` (in order)."""
    offset = 0
    for p in params:
        n = p.numel()
        g = flat[offset : offset + n].view_as(p).to(p.dtype)
        p.grad = g.clone() if p.grad is None else p.grad + g
        offset += n

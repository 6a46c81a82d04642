"""One run over several processes (``torchrun``): each process takes a shard of every
global batch, and gradients are summed across processes before the optimizer steps.

The engine draws the same global batch in every process (same seed, same generator) and
each process keeps rows ``rank::world`` of it. A task's loss on a shard is its mean over
the shard's labelled rows times ``labelled in shard / labelled in the global batch``, so the
sum over processes is the mean over the global batch, partial labels included; summing
the gradients then gives the gradient of one process over the full batch. Per-task
gradient matrices ``[T, D]`` are summed *before* a weighting method combines them, and
methods that read the task losses get the global losses, so gradient-combination MTL
methods run as they would in one process. Validation runs on the whole validation split
in every process, so every process selects the same epoch and holds the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shards:
    """This process's place among ``world`` processes training one run."""

    rank: int
    world: int

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global batch."""
        return idx[self.rank :: self.world]

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over the processes, in place; returns it."""
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def sum_grads_(self, params: list[torch.Tensor]) -> None:
        """Sum the ``.grad`` of ``params`` over the processes, in one collective.

        A parameter without a gradient in every process keeps none (AdamW then leaves it
        alone, as one process would); one with a gradient anywhere gets the sum.
        """
        if not params:
            return
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
        self.sum_(has)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        self.sum_(flat)
        offset = 0
        for p, present in zip(params, has.tolist()):
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone() if present else None
            offset += n


def current() -> Shards | None:
    """The shards of this process when a process group of several processes is running."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Shards(dist.get_rank(), dist.get_world_size())
    return None

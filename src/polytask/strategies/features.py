"""Features of frozen layers, computed once and shared by the runs of one process."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from polytask.data.prepare import Split
from polytask.training.engine import EVAL_BATCH

# The default bound of a FeatureCache: 1 GiB of feature tensors per process. Each worker
# process of a study holds its own cache, so a study may keep ``workers`` times this.
DEFAULT_MAX_BYTES = 1 << 30


def stay_in_eval(module: nn.Module, inputs) -> None:
    module.eval()  # returns None: a pre-hook's return value would replace the inputs


@torch.no_grad()
def features_of(backbone: nn.Module, split: Split) -> torch.Tensor:
    return torch.cat([backbone(x) for x in split.x.split(EVAL_BATCH)])


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of ``t``'s elements (a view counts its own elements, not its whole storage)."""
    return t.element_size() * t.nelement()


class FeatureCache:
    """Features of frozen layers, shared by the runs of one process, at most ``max_bytes``.

    Keys must name everything the features depend on (content digests of the layers and
    of the inputs). Each entry keeps the seconds its computation took, so that a run that
    finds its features here is charged what computing them costs; an entry computed again
    after its eviction is charged its new seconds, so a bound changes timings, never results.

    The cache holds at most ``max_bytes`` bytes of feature tensors (default
    :data:`DEFAULT_MAX_BYTES`, 1 GiB; ``None``: no bound). When a new entry would pass the
    bound, the least recently used entries (a hit counts as a use) are dropped first; the
    entry being returned is never dropped, and one larger than the whole bound is returned
    without being kept. ``hits``, ``misses`` and ``evictions`` count what happened.
    """

    def __init__(self, max_bytes: int | None = DEFAULT_MAX_BYTES):
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"FeatureCache max_bytes must be >= 0 or None, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Any, tuple[torch.Tensor, float]] = OrderedDict()
        self._sizes: dict[Any, int] = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: Any, compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
        """The cached ``(features, seconds)`` under ``key``, computing them on a miss."""
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
            return self._entries[key]
        self.misses += 1
        start = time.perf_counter()
        features = compute()
        entry = (features, time.perf_counter() - start)
        size = tensor_bytes(features)
        if self.max_bytes is not None and size > self.max_bytes:
            return entry  # would not fit even alone: returned, not kept
        self._entries[key] = entry
        self._sizes[key] = size
        self.nbytes += size
        if self.max_bytes is not None:
            # The new entry is last and fits alone, so the loop stops before reaching it.
            while self.nbytes > self.max_bytes:
                old, _ = self._entries.popitem(last=False)
                self.nbytes -= self._sizes.pop(old)
                self.evictions += 1
        return entry

    def __contains__(self, key: Any) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

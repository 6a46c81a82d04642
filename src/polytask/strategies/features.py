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


def stay_in_eval(module: nn.Module, inputs) -> None:
    module.eval()  # returns None: a pre-hook's return value would replace the inputs


@torch.no_grad()
def features_of(backbone: nn.Module, split: Split) -> torch.Tensor:
    return torch.cat([backbone(x) for x in split.x.split(EVAL_BATCH)])


class FeatureCache:
    """Features of frozen layers, shared by the runs of one process, at most ``max_bytes``.

    Keys must name everything the features depend on (content digests of the layers and
    of the inputs). Each entry keeps the seconds its computation took, so that a run that
    finds its features here is charged what computing them costs. The least recently used
    entries are dropped first.
    """

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Any, tuple[torch.Tensor, float]] = OrderedDict()

    def get(self, key: Any, compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
        """The cached ``(features, seconds)`` under ``key``, computing them on a miss."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        start = time.perf_counter()
        features = compute()
        entry = self._entries[key] = (features, time.perf_counter() - start)
        while len(self._entries) > 1 and sum(f.nbytes for f, _ in self._entries.values()) > self.max_bytes:
            self._entries.popitem(last=False)
        return entry

    def __len__(self) -> int:
        return len(self._entries)

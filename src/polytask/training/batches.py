"""Which rows each training step reads.

Endless shuffled index batches per task, the tasks that read the same inputs (so one
backbone pass can serve them), and each step's draw of labelled rows per task
(:class:`_Rows`), all from the run's generator.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from polytask.core.targets import labelled_rows
from polytask.data.prepare import PreparedTask
from polytask.data.rows import same_inputs


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled index batches; a reshuffle each pass over the data."""
    while True:
        perm = torch.randperm(n, generator=gen)
        chunks = list(perm.split(batch_size))
        # A one-sample batch breaks BatchNorm in training mode; its sample comes back next pass.
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            chunks.pop()
        yield from chunks


def same_input_groups(data: dict[str, PreparedTask], split: str = "train") -> list[list[str]]:
    """Tasks whose ``split`` inputs are the same rows (label columns of one file, one
    builtin's targets), in order of first appearance; a task with inputs of its own is a
    group of one."""
    groups: list[list[str]] = []
    for n, d in data.items():
        x = getattr(d, split).x
        for g in groups:
            if same_inputs(x, getattr(data[g[0]], split).x):
                g.append(n)
                break
        else:
            groups.append([n])
    return groups


class _Rows:
    """Each step's training rows per task, drawn from its labelled rows only.

    Tasks that read the same inputs and are labelled on the same rows (and take as many
    per step) draw from one stream: they get the same rows, one batch for all of them.
    ``forward_groups`` lists the tasks whose rows one backbone pass serves (see
    :func:`_shared_losses`); a group of one is a task computed on its own.
    """

    def __init__(self, data: dict[str, PreparedTask], rows: dict[str, int], gen: torch.Generator, shared: bool, alone: set[str]):
        self.labelled = {n: torch.nonzero(labelled_rows(d.task, d.train.y)).flatten() for n, d in data.items()}
        empty = [n for n, idx in self.labelled.items() if len(idx) == 0]
        if empty:
            raise ValueError(f"task '{empty[0]}' has no labelled training rows")
        self.sizes = {n: len(idx) for n, idx in self.labelled.items()}
        candidates = same_input_groups(data) if shared else [[n] for n in data]
        self.forward_groups = []
        for g in candidates:
            together = [n for n in g if n not in alone]
            self.forward_groups += ([together] if together else []) + [[n] for n in g if n in alone]
        self.stream_of: dict[str, int] = {}
        self.streams: list[Iterator[torch.Tensor]] = []
        for g in self.forward_groups:
            for n in g:
                twin = next((m for m in g if m in self.stream_of and rows[m] == rows[n] and torch.equal(self.labelled[m], self.labelled[n])), None)
                if twin is None:
                    self.stream_of[n] = len(self.streams)
                    self.streams.append(_batches(self.sizes[n], rows[n], gen))
                else:
                    self.stream_of[n] = self.stream_of[twin]
        self._owner = {i: n for n, i in reversed(list(self.stream_of.items()))}

    def draw(self) -> dict[str, torch.Tensor]:
        """Row indices (into each task's training split) for one step."""
        drawn = [next(s) for s in self.streams]
        positions = {i: self.labelled[self._owner[i]][p] for i, p in enumerate(drawn)}
        return {n: positions[i] for n, i in self.stream_of.items()}

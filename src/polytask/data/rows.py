"""A run's split of inputs that stays on disk, read batch by batch.

A task whose inputs were decoded into memory-mapped arrays (an image folder, a dataset
written to disk) is never held whole by a run: :class:`StoredRows` names the rows of the
mapped array the split has and the scale its run fitted, and turns the rows a step asks
for into a tensor. The tensors are those the in-memory path gives for the same rows
(the same conversion and the same division), so a study's numbers do not depend on
where its inputs live.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from polytask.core.digest import array_digest, tensor_digest, value_digest
from polytask.core.mapped import chunk_rows, read_rows, release


@dataclass(frozen=True)
class StoredRows:
    """Rows ``rows`` of the mapped array ``source``, as the tensors a backbone reads.

    Images (any numeric ``source`` with 2 or 3 axes per row) become float32 with a channel
    axis, divided by ``scale``; token ids are cut to ``width`` columns. Indexing with
    row positions (a tensor, an array, a slice or a boolean mask) reads those rows; the
    tensor lands on ``device``, through pinned memory for CUDA.

    Attributes:
        source: the memory-mapped array (``[N, H, W]``, ``[N, C, H, W]`` or token ids ``[N, L]``).
        key: digest of ``source``'s content (the prepared folder's key), for cache keys.
        rows: the split's rows of ``source``, in order.
        scale: the divisor of image values (the run's training maximum); None for token ids.
        width: token columns kept (the split's longest text); None for images.
        table: for a table's rows, what turns them into tensors (the run's encoders and
            scaling, :class:`~polytask.data.prepare.TableScaling`), with a ``digest()``.
        device: where read rows go.
    """

    source: np.ndarray
    key: str
    rows: np.ndarray
    scale: float | None = None
    width: int | None = None
    table: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def tokens(self) -> bool:
        return self.scale is None and self.table is None

    @property
    def shape(self) -> torch.Size:
        one = self._convert(np.array(self.source[:1])) if len(self.source) else torch.empty(0)
        return torch.Size((len(self.rows), *one.shape[1:]))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> torch.dtype:
        return torch.long if self.tokens else torch.float32

    def __len__(self) -> int:
        return len(self.rows)

    def _convert(self, a: np.ndarray) -> torch.Tensor:
        if self.table is not None:
            return self.table(a)
        if self.tokens:
            t = torch.as_tensor(a, dtype=torch.long)
            return t[:, : self.width] if self.width is not None else t
        t = torch.as_tensor(np.asarray(a, dtype=np.float32))
        if t.ndim == 3:
            t = t.unsqueeze(1)
        return t / torch.tensor(self.scale, dtype=torch.float32)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, torch.Tensor):
            index = index.detach().cpu().numpy()
        picked = self.rows[index]
        picked = np.atleast_1d(picked)
        t = self._convert(read_rows(self.source, picked))
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def split(self, size: int) -> Iterator[torch.Tensor]:
        """Consecutive batches of ``size`` rows, as ``torch.Tensor.split`` gives them."""
        for i in range(0, len(self.rows), size):
            yield self[i : i + size]

    def to(self, device: torch.device | str) -> StoredRows:
        """The same rows, read onto ``device``."""
        return replace(self, device=torch.device(device))

    def tensor(self) -> torch.Tensor:
        """Every row at once, for the few methods that need a split whole in memory."""
        return torch.cat(list(self.split(chunk_rows(self.source)))) if len(self.rows) else self._convert(np.array(self.source[:0]))

    def digest(self) -> str:
        """Digest of the tensors these rows give: the source's content, rows, scale, width."""
        return value_digest([self.key, array_digest(self.rows), self.scale, self.width, self.table.digest() if self.table is not None else None])

    def same_rows(self, other: object) -> bool:
        """Whether ``other`` reads the same tensors."""
        return (
            isinstance(other, StoredRows)
            and other.key == self.key
            and other.scale == self.scale
            and other.width == self.width
            and other.table is self.table
            and np.array_equal(other.rows, self.rows)
        )


def scan(source: np.ndarray, rows: np.ndarray, reduce, start):
    """Fold ``reduce(acc, chunk)`` over rows ``rows`` of ``source``, a chunk at a time."""
    acc, step = start, chunk_rows(source)
    for i in range(0, len(rows), step):
        acc = reduce(acc, np.asarray(source[rows[i : i + step]]))
        release(source)
    return acc


def image_scale(source: np.ndarray, rows: np.ndarray) -> float:
    """The divisor the in-memory path fits on these training rows: their largest absolute
    value as float32 (1 when it is nearly 0), as :func:`~polytask.data.prepare.standardize`."""
    top = scan(source, rows, lambda m, c: max(m, float(np.abs(c.astype(np.float32)).max(initial=0.0))), 0.0)
    top = float(np.float32(top))
    return top if top > 1e-8 else 1.0


def token_width(source: np.ndarray, rows: np.ndarray, pad_id: int) -> int:
    """Columns up to the last that is not padding in any of these rows (at least 1), as
    :meth:`~polytask.data.prepare.ModelInputs.rows` trims an in-memory selection."""

    def last_used(w: int, c: np.ndarray) -> int:
        used = np.nonzero((c != pad_id).any(axis=0))[0]
        return max(w, int(used.max()) + 1 if len(used) else 1)

    return scan(source, rows, last_used, 1) if source.shape[1] else 0


def as_tensor(x: torch.Tensor | StoredRows) -> torch.Tensor:
    """``x`` whole in memory (a tensor stays as it is)."""
    return x.tensor() if isinstance(x, StoredRows) else x


def inputs_digest(x: torch.Tensor | StoredRows) -> str:
    """Digest of the inputs a split holds, wherever they live."""
    return x.digest() if isinstance(x, StoredRows) else tensor_digest(x)


def same_inputs(a: torch.Tensor | StoredRows, b: torch.Tensor | StoredRows) -> bool:
    """Whether two splits hold the same inputs (identical tensors, or the same stored rows)."""
    if a is b:
        return True
    if isinstance(a, StoredRows) or isinstance(b, StoredRows):
        return isinstance(a, StoredRows) and a.same_rows(b)
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))

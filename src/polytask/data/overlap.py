"""Rows shared between tasks: a target's test rows must not be another task's training rows.

Tasks are compared row by row through a digest of each row's values, so the check needs no
pairwise comparison and works for images, tabular rows and text alike.
"""

from __future__ import annotations

import hashlib

import numpy as np

from polytask.core.mapped import release
from polytask.data.arrays import TaskData, is_text

# Rows converted per chunk: bounds the memory of the float64 copy of large image sets.
CHUNK = 4096


def row_digests(x: np.ndarray) -> list[bytes]:
    """A digest per row of ``x``, in order, equal for rows with equal values (of any numeric dtype)."""
    if is_text(x):
        return [hashlib.blake2b(str(t).encode(), digest_size=8).digest() for t in x]
    out = []
    for start in range(0, len(x), CHUNK):
        # float64 holds every value of the usual input dtypes exactly; + 0.0 folds -0.0 into 0.0.
        block = np.ascontiguousarray(np.asarray(x[start : start + CHUNK], dtype=np.float64) + 0.0)
        out.extend(hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in block.reshape(len(block), -1))
        release(x)  # a mapped array's pages, read: not kept
    return out


def _seen(d: TaskData) -> list[bytes]:
    """Digests of the inputs a task trains or selects on: its training rows and validation
    rows (split by split: never copied whole)."""
    return row_digests(d.x_train) + (row_digests(d.x_val) if d.x_val is not None else [])


def _sample_shape(x: np.ndarray) -> tuple:
    return ("text",) if is_text(x) else tuple(x.shape[1:])


def test_leaks(data: dict[str, TaskData], targets: list[str]) -> list[tuple[str, str, int, int]]:
    """For each target, the other tasks that train on some of its test rows.

    A row the target itself repeats between its own training and test rows is not counted:
    data with naturally repeated rows has it in every study, with or without other tasks.

    Returns:
        ``(target, other, rows, test_rows)`` per offending pair: ``rows`` of the target's
        ``test_rows`` test rows are among ``other``'s training or validation inputs.
    """
    seen = {n: (_sample_shape(d.x_train), set(_seen(d))) for n, d in data.items()}
    found = []
    for t in targets:
        shape = _sample_shape(data[t].x_test)
        test = row_digests(data[t].x_test)
        own = seen[t][1]
        for other, (other_shape, rows) in seen.items():
            if other == t or other_shape != shape:
                continue
            leaked = sum(1 for d in test if d in rows and d not in own)  # rows, a repeated row counted each time
            if leaked:
                found.append((t, other, leaked, len(test)))
    return found

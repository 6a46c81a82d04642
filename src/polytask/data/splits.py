"""Seeded, stratified splits: test hold-out, validation carve, training fractions."""

from __future__ import annotations

import zlib

import numpy as np


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator fixed by ``seed`` and names, stable across processes and Python versions."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _by_class(y: np.ndarray, stratify: bool) -> list[np.ndarray]:
    if not stratify:
        return [np.arange(len(y))]
    # Grouping through the inverse index keeps NaN (missing) labels together as one stratum;
    # `y == c` would drop them, since NaN equals nothing.
    _, inverse = np.unique(np.asarray(y, dtype=np.float64), return_inverse=True)
    return [np.flatnonzero(inverse == k) for k in range(inverse.max() + 1)]


def holdout(y: np.ndarray, size: float, rng: np.random.Generator, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into ``(keep, held)`` with about ``size`` of each class held out.

    Every class with at least two samples keeps one and holds one, so neither side loses a class.
    """
    keep, held = [], []
    for idx in _by_class(y, stratify):
        idx = rng.permutation(idx)
        n_held = int(round(size * len(idx)))
        if len(idx) >= 2:
            n_held = min(max(n_held, 1), len(idx) - 1)
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def subsample(y: np.ndarray, fraction: float, rng: np.random.Generator, stratify: bool) -> np.ndarray:
    """Indices of a ``fraction`` of the rows, per class when ``stratify``, at least one per class.

    For one generator state the subsets are nested: a smaller fraction takes a prefix of
    the same per-class permutation, so data-efficiency curves add data rather than swap it.
    """
    if fraction >= 1.0:
        return np.arange(len(y))
    chosen = []
    for idx in _by_class(y, stratify):
        idx = rng.permutation(idx)
        chosen.append(idx[: max(1, int(round(fraction * len(idx))))])
    return np.sort(np.concatenate(chosen))


# The fewest validation rows a shrunken validation split keeps: per class, and in all for
# regression (or for tasks that share one unstratified carve).
MIN_VAL_PER_CLASS = 5
MIN_VAL_ROWS = 30


def validation_subset(y: np.ndarray, fraction: float, rng: np.random.Generator, stratify: bool, min_rows: int = MIN_VAL_ROWS) -> np.ndarray:
    """Indices of the validation rows a run at ``fraction`` keeps: a nested prefix.

    ``max(fraction * n, floor)`` rows, the floor being :data:`MIN_VAL_PER_CLASS` rows of
    each class when ``stratify`` (or all of a smaller class), else ``min_rows``. For one
    generator state a smaller fraction keeps a prefix of a larger one's rows.
    """
    if fraction >= 1.0:
        return np.arange(len(y))
    chosen = []
    for idx in _by_class(y, stratify):
        idx = rng.permutation(idx)
        floor = min(MIN_VAL_PER_CLASS, len(idx)) if stratify else min(min_rows, len(idx))
        chosen.append(idx[: max(floor, int(round(fraction * len(idx))))])
    return np.sort(np.concatenate(chosen))

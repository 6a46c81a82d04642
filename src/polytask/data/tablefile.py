"""A table file's columns: which are features, the labels as numbers, and the test split.

Shared by the CSV and Parquet readers (:mod:`polytask.data.loaders`,
:mod:`polytask.data.parquet`), so a table reads alike whichever way it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polytask.config import DataConfig
from polytask.core.errors import ConfigError
from polytask.data.splits import holdout, rng_for

if TYPE_CHECKING:
    import pandas as pd

PARQUET_MAGIC = b"PAR1"


def read_parquet(path: Path, read: Callable[[Path], Any]) -> Any:
    """``read(path)`` for a Parquet file, with one line when pyarrow is missing or the file
    cannot be read."""
    try:
        import pyarrow  # noqa: F401  (pandas reads Parquet through it)
    except ImportError:
        raise ConfigError(f"{path} is a Parquet file, which needs pyarrow; install it with: pip install 'polytask[parquet]'") from None
    try:
        return read(path)
    except Exception as e:  # corrupt or unsupported Parquet: one line
        raise ConfigError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None


def is_parquet(path: Path) -> bool:
    """Whether ``path`` is a Parquet file (by its magic bytes, whatever its name)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == PARQUET_MAGIC
    except OSError:
        return False


def table_features(spec: DataConfig, cols: list) -> list[str]:
    """The feature columns of ``spec``'s table (columns ``cols``); one line for a missing one."""
    if spec.target not in cols:
        raise ConfigError(f"{spec.csv}: no column '{spec.target}' for target (columns: {', '.join(map(str, cols))})")
    skip = {spec.target, *(spec.exclude or [])}
    if spec.text is not None and spec.text not in cols:
        raise ConfigError(f"{spec.csv}: no column '{spec.text}' for text (columns: {', '.join(map(str, cols))})")
    features = [spec.text] if spec.text is not None else spec.features or [c for c in cols if c not in skip]
    absent = [c for c in features if c not in cols]
    if absent:
        raise ConfigError(f"{spec.csv}: feature column(s) {', '.join(absent)} not found (columns: {', '.join(map(str, cols))})")
    return features


def check_test_columns(spec: DataConfig, features: list[str], cols: list) -> None:
    gone = [c for c in [*features, spec.target] if c not in cols]
    if gone:
        raise ConfigError(f"{spec.test}: missing column(s) {', '.join(gone)} that {spec.csv} has")


def label_names(train: pd.Series) -> tuple[str, ...] | None:
    """The class names of string labels, in the order of their class ids (sorted); None
    for numeric labels."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(train):
        return None
    return tuple(str(v) for v in sorted(train.dropna().unique()))


def label_split(spec: DataConfig, labels: dict[str, pd.Series], key: str) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, np.ndarray | None]]]:
    """Each split's labels (string labels as class ids in sorted order) and where its rows
    are: ``{split: (file split, row indices or None for all)}``; without a test file, a test
    split drawn from the content ``key`` names."""
    names = label_names(labels["train"])
    mapping = None if names is None else {v: i for i, v in enumerate(sorted(labels["train"].dropna().unique()))}
    ys = {}
    for split, y in labels.items():
        if mapping is not None:
            unknown = set(y.dropna()) - set(mapping)
            if unknown:
                raise ConfigError(f"{spec.test}: label {sorted(map(str, unknown))[0]!r} in '{spec.target}' does not occur in {spec.csv}")
            y = y.map(mapping)
        ys[split] = y.to_numpy(np.float64)
    if "test" in labels:
        return ys, {split: (split, None) for split in labels}
    y = ys["train"]
    classes = spec.stratify and (mapping is not None or (np.all(np.mod(y[np.isfinite(y)], 1) == 0) and len(np.unique(y)) <= 50))
    keys = [key, "test"] + ([spec.target] if classes else [])
    train, test = holdout(y, spec.test_size, rng_for(0, *keys), stratify=bool(classes))
    return {"train": y[train], "test": y[test]}, {"train": ("train", train), "test": ("train", test)}


def as_labels(y: np.ndarray) -> np.ndarray:
    """Integer dtype for finite whole-number labels, so they read as classes."""
    if np.all(np.isfinite(y)) and np.all(np.mod(y, 1) == 0):
        return y.astype(np.int64)
    return y

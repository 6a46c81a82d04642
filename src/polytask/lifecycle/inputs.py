"""Reading the inputs ``polytask predict`` is given: an NPZ, a CSV or Parquet table (by the
saved column names), an image folder, or image files.

Images are decoded as training decoded them (:func:`polytask.data.images.decode`: grey or
RGB as the model's inputs, resized to the source's ``size`` when it had one); the saved
model then crops, resizes and scales them itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from polytask.core.errors import ConfigError
from polytask.data.images import SUFFIXES, decode
from polytask.data.loaders import read_csv_file, read_npz
from polytask.data.preprocess import InputTransform
from polytask.data.tablefile import is_parquet


def read_inputs(paths: list[Path], transform: InputTransform) -> tuple[Any, list[str]]:
    """The inputs in ``paths`` for a task fed by ``transform``, and a name per row (the
    image file, or the row number).

    Raises:
        ConfigError: a path that does not exist, a file of no readable kind, an NPZ
            without one input array.
    """
    for p in paths:
        if not p.exists():
            raise ConfigError(f"input '{p}' does not exist")
    if len(paths) > 1 or paths[0].is_dir() or paths[0].suffix.lower() in SUFFIXES:
        return _images(paths, transform)
    path = paths[0]
    if path.suffix.lower() == ".npz":
        x = _npz(path)
        return x, [str(i) for i in range(len(x))]
    if not is_parquet(path) and path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        raise ConfigError(f"input '{path}': expected an .npz, a .csv or Parquet table, an image folder or image files")
    frame = read_csv_file(path)  # CSV, or Parquet by its magic bytes
    return frame, [str(i) for i in range(len(frame))]


def _npz(path: Path) -> np.ndarray:
    """The input array of an NPZ: ``x``, else ``x_test``, else its only array."""
    arrays = read_npz(path)
    key = next((k for k in ("x", "x_test") if k in arrays), next(iter(arrays)) if len(arrays) == 1 else None)
    if key is None:
        raise ConfigError(f"{path}: arrays {', '.join(arrays) or 'none'}; expected one named 'x' (or 'x_test', or a single array)")
    return arrays[key]


def _images(paths: list[Path], transform: InputTransform) -> tuple[np.ndarray, list[str]]:
    if transform.kind != "image":
        raise ConfigError(f"image files given, but this model's task reads {transform.kind} inputs")
    files: list[Path] = []
    for p in paths:
        files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES) if p.is_dir() else [p]
    if not files:
        raise ConfigError(f"no image files ({', '.join(SUFFIXES)}) under {', '.join(map(str, paths))}")
    raw = transform.raw_shape
    channels = 3 if len(raw) == 3 and raw[0] == 3 else 1
    return decode(files, transform.decode_size, channels), [str(f) for f in files]

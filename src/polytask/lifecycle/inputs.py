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
from polytask.data.loaders import read_csv_file
from polytask.data.preprocess import InputTransform
from polytask.data.tablefile import is_parquet, read_parquet


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
    if is_parquet(path):
        frame = read_parquet(path, _read_parquet)
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        frame = read_csv_file(path)
    else:
        raise ConfigError(f"input '{path}': expected an .npz, a .csv or Parquet table, an image folder or image files")
    return frame, [str(i) for i in range(len(frame))]


def _read_parquet(path: Path):
    import pandas as pd

    return pd.read_parquet(path)


def _npz(path: Path) -> np.ndarray:
    """The input array of an NPZ: ``x``, else ``x_test``, else its only array."""
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            key = next((k for k in ("x", "x_test") if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise ConfigError(f"{path}: arrays {', '.join(keys) or 'none'}; expected one named 'x' (or 'x_test', or a single array)")
            return f[key]
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{path}: {e} (object arrays are not read; save the inputs as numbers or strings)") from None
    except Exception as e:  # not a zip, truncated
        raise ConfigError(f"{path}: not a readable NPZ file ({type(e).__name__}: {e})") from None


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

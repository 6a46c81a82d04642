"""A task from datasets users already have: a map-style or iterable
``torch.utils.data.Dataset`` of ``(x, y)`` pairs, or a Hugging Face ``datasets`` split
(rows as mappings, with the input and label columns named).

The rows are read once through a :class:`~torch.utils.data.DataLoader` into arrays
(:class:`~polytask.data.arrays.TaskData`), so a study treats them as any other data: in
memory by default, or with ``store`` written batch by batch to ``.npy`` files there and
read memory-mapped, so a data set larger than memory is never held whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, IterableDataset

from polytask.core.errors import ConfigError
from polytask.data.arrays import TaskData
from polytask.data.ondisk import gather, open_array, write_array

# Rows read per batch.
READ_BATCH = 256


def _value(v: Any) -> Any:
    """A sample's input or label as NumPy reads it (tensors, PIL images, numbers, strings)."""
    if hasattr(v, "detach"):  # a torch tensor
        return v.detach().cpu().numpy()
    if isinstance(v, str):
        return v
    return np.asarray(v)


def _keep(rows: list) -> list:
    """A DataLoader's batch as the rows themselves (inputs may be PIL images or strings)."""
    return rows


def _pair(row: Any, i: int, x: str | None, y: str | None, what: str) -> tuple[Any, Any]:
    if isinstance(row, dict):
        if x is None or y is None or x not in row or y not in row:
            raise ConfigError(f"{what}: row {i} is a mapping with columns {sorted(row)}; name its input and label columns (x=..., y=...)")
        return _value(row[x]), _value(row[y])
    if isinstance(row, (tuple, list)) and len(row) == 2:
        return _value(row[0]), _value(row[1])
    raise ConfigError(f"{what}: row {i} is a {type(row).__name__}; expected an (x, y) pair or a mapping of columns")


def _batches(dataset: Iterable, x: str | None, y: str | None, what: str, workers: int) -> Iterator[tuple[list, list]]:
    """Inputs and labels of ``dataset``, a batch at a time, read through a DataLoader
    (``workers`` processes for a map-style dataset; an iterable one is read in this one,
    since each worker would read all of it)."""
    mapped = hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__") and not isinstance(dataset, IterableDataset)
    loader = DataLoader(dataset, batch_size=READ_BATCH, num_workers=workers if mapped else 0, collate_fn=_keep)
    i = 0
    for rows in loader:
        xs, ys = [], []
        for row in rows:
            xi, yi = _pair(row, i, x, y, what)
            xs.append(xi)
            ys.append(yi)
            i += 1
        yield xs, ys
    if i == 0:
        raise ConfigError(f"{what}: no rows")


def _stack(xs: list, what: str, first: tuple | None) -> np.ndarray:
    shapes = {a.shape for a in xs} | ({first} if first is not None else set())
    if len(shapes) > 1:
        raise ConfigError(f"{what}: inputs have different shapes ({', '.join(map(str, sorted(shapes)[:3]))}); resize them to one shape first")
    a = np.stack(xs)
    # PIL colour images come as H, W, C: channels first, as every image array here.
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3) else a


def rows_of(dataset: Iterable, x: str | None = None, y: str | None = None, what: str = "dataset", workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels of every row of ``dataset``, in memory.

    Args:
        dataset: rows that are ``(x, y)`` pairs, or mappings holding columns ``x`` and ``y``.
        x, y: the input and label columns of mapping rows (a Hugging Face split).
        what: the dataset's name in messages.
        workers: DataLoader worker processes reading a map-style dataset.

    Raises:
        ConfigError: a row of another form, or inputs of different shapes.
    """
    xs, ys = [], []
    for bx, by in _batches(dataset, x, y, what, workers):
        xs += bx
        ys += by
    if isinstance(xs[0], str):
        return np.array(xs, dtype=object), np.asarray(ys)
    return _stack(xs, what, None), np.asarray(ys)


def write_rows(dataset: Iterable, folder: Path, name: str, x: str | None, y: str | None, what: str, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of ``dataset`` written batch by batch to ``folder/name.npy`` and read back
    memory-mapped, and its labels (in memory); texts, which cannot be mapped, stay in memory."""
    raw = folder / f"{name}.raw"
    ys: list = []
    shape, dtype, n, texts = None, None, 0, []
    with open(raw, "wb") as f:
        for bx, by in _batches(dataset, x, y, what, workers):
            ys += by
            if isinstance(bx[0], str) or texts:
                texts += bx
                continue
            a = _stack(bx, what, None if shape is None else shape)
            if shape is None:
                shape, dtype = a.shape[1:], a.dtype
            elif a.dtype != dtype:
                raise ConfigError(f"{what}: inputs of dtype {a.dtype} after inputs of dtype {dtype}; give every row one dtype")
            f.write(np.ascontiguousarray(a).tobytes())
            n += len(a)
    if texts:
        raw.unlink()
        return np.array(texts, dtype=object), np.asarray(ys)
    flat = np.memmap(raw, dtype=dtype, mode="r", shape=(n, *shape))
    write_array(folder / f"{name}.npy", gather(flat, np.arange(n)), n, shape, dtype)
    del flat
    raw.unlink()
    return open_array(folder / f"{name}.npy"), np.asarray(ys)


def task_from_datasets(
    train: Iterable,
    test: Iterable,
    val: Iterable | None = None,
    x: str | None = None,
    y: str | None = None,
    store: str | Path | None = None,
    workers: int = 0,
) -> TaskData:
    """A task's data from datasets of ``(x, y)`` pairs (or mapping rows with columns ``x`` and
    ``y``): ``Study(config, data={"mine": task_from_datasets(train_ds, test_ds)})``.

    Images may come as ``[C, H, W]`` or ``[H, W]`` arrays or tensors, or PIL images
    (``[H, W, C]`` colour images are moved to channels first).

    Args:
        train, test, val: the splits (``val`` optional: without it, each run carves one).
        x, y: the input and label columns of mapping rows.
        store: a folder for this task's inputs: they are written there batch by batch and
            read memory-mapped, never whole in memory (a study reads a run's batches from
            them). The folder's arrays are replaced on each call, so they always hold
            these datasets' rows.
        workers: DataLoader worker processes reading a map-style dataset.
    """
    splits = {"train": train, "test": test, **({"val": val} if val is not None else {})}
    names = {"train": "train dataset", "test": "test dataset", "val": "validation dataset"}
    if store is None:
        arrays = {s: rows_of(d, x, y, names[s], workers) for s, d in splits.items()}
    else:
        root = Path(store)
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".datasets.", dir=root))
        try:
            arrays = {s: write_rows(d, tmp, s, x, y, names[s], workers) for s, d in splits.items()}
            for s in splits:
                if (tmp / f"{s}.npy").exists():
                    os.replace(tmp / f"{s}.npy", root / f"x_{s}.npy")  # an open map follows its file
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    fields = {f"{k}_{s}": v for s, (xs, ys) in arrays.items() for k, v in (("x", xs), ("y", ys))}
    return TaskData(**fields, origin="datasets")

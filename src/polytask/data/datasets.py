"""A task from datasets users already have: a map-style or iterable
``torch.utils.data.Dataset`` of ``(x, y)`` pairs, or a Hugging Face ``datasets`` split
(rows as mappings, with the input and label columns named). The rows are read once into
arrays (:class:`~polytask.data.arrays.TaskData`), so a study treats them as any other data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from polytask.core.errors import ConfigError
from polytask.data.arrays import TaskData


def _value(v: Any) -> Any:
    """A sample's input or label as NumPy reads it (tensors, PIL images, numbers, strings)."""
    if hasattr(v, "detach"):  # a torch tensor
        return v.detach().cpu().numpy()
    if isinstance(v, str):
        return v
    return np.asarray(v)


def rows_of(dataset: Iterable, x: str | None = None, y: str | None = None, what: str = "dataset") -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels of every row of ``dataset``.

    Args:
        dataset: rows that are ``(x, y)`` pairs, or mappings holding columns ``x`` and ``y``.
        x, y: the input and label columns of mapping rows (a Hugging Face split).
        what: the dataset's name in messages.

    Raises:
        ConfigError: a row of another form, or inputs of different shapes.
    """
    xs, ys = [], []
    for i, row in enumerate(dataset):
        if isinstance(row, dict):
            if x is None or y is None or x not in row or y not in row:
                raise ConfigError(f"{what}: row {i} is a mapping with columns {sorted(row)}; name its input and label columns (x=..., y=...)")
            xi, yi = row[x], row[y]
        elif isinstance(row, (tuple, list)) and len(row) == 2:
            xi, yi = row
        else:
            raise ConfigError(f"{what}: row {i} is a {type(row).__name__}; expected an (x, y) pair or a mapping of columns")
        xs.append(_value(xi))
        ys.append(_value(yi))
    if not xs:
        raise ConfigError(f"{what}: no rows")
    if isinstance(xs[0], str):
        return np.array(xs, dtype=object), np.asarray(ys)
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise ConfigError(f"{what}: inputs have different shapes ({', '.join(map(str, sorted(shapes)[:3]))}); resize them to one shape first")
    return np.stack(xs), np.asarray(ys)


def task_from_datasets(train: Iterable, test: Iterable, val: Iterable | None = None, x: str | None = None, y: str | None = None) -> TaskData:
    """A task's data from datasets of ``(x, y)`` pairs (or mapping rows with columns ``x`` and
    ``y``): ``Study(config, data={"mine": task_from_datasets(train_ds, test_ds)})``.

    Images may come as ``[C, H, W]`` or ``[H, W]`` arrays or tensors, or PIL images
    (``[H, W, C]`` colour images are moved to channels first).
    """
    x_tr, y_tr = rows_of(train, x, y, "train dataset")
    x_te, y_te = rows_of(test, x, y, "test dataset")
    extra = dict(zip(("x_val", "y_val"), rows_of(val, x, y, "validation dataset"))) if val is not None else {}
    if x_tr.ndim == 4 and x_tr.shape[-1] in (1, 3) and x_tr.shape[1] not in (1, 3):  # PIL colour: H, W, C
        x_tr, x_te = x_tr.transpose(0, 3, 1, 2), x_te.transpose(0, 3, 1, 2)
        if "x_val" in extra:
            extra["x_val"] = extra["x_val"].transpose(0, 3, 1, 2)
    return TaskData(x_tr, y_tr, x_te, y_te, origin="datasets", **extra)

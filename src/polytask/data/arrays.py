"""In-memory task data and the checks every loader's output passes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polytask.core.errors import ConfigError
from polytask.core.inputs import TEXT_SHAPE
from polytask.core.tasks import Task, labelled
from polytask.data.tabular import TableLayout

SPLITS = ("train", "val", "test")


def is_text(x: np.ndarray | None) -> bool:
    """Whether ``x`` holds one string per sample."""
    return x is not None and x.ndim == 1 and x.dtype.kind in "OUS"


@dataclass(frozen=True)
class TaskData:
    """Arrays of one task as loaded, before splitting, scaling or resizing.

    Inputs are ``(N, d)`` tabular rows, ``(N, H, W)`` grayscale images or ``(N, C, H, W)``
    images. ``x_val``/``y_val`` are optional: without them a validation split is
    carved from train for each seed.

    Attributes:
        origin: where the arrays came from (a file path or ``builtin:<name>``), used in messages.
        table: for a table with categorical columns or missing values to impute, how its
            columns are laid out (:mod:`polytask.data.tabular`): the rows are already in
            that layout, NaN where a value is missing, and each run fits its encoders on
            its own training rows. None for plain numeric rows, images and text.
        columns: the feature columns of a table file, in order (or its one text column);
            a saved model reads new rows by these names. None for arrays.
        class_names: the labels of class ids ``0..K-1`` when the file had string labels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    origin: str = "arrays"
    table: TableLayout | None = None
    columns: tuple[str, ...] | None = None
    class_names: tuple[str, ...] | None = None

    def split(self, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The ``(x, y)`` pair of split ``train``, ``val`` or ``test``."""
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @property
    def input_shape(self) -> tuple:
        """Shape of one input sample (:data:`TEXT_SHAPE` for text), a plain tuple.

        A table's code columns are part of it; which columns to embed is
        ``table.embeddings``, passed to the ``mlp`` backbone as an option.
        """
        return TEXT_SHAPE if is_text(self.x_train) else tuple(self.x_train.shape[1:])


def check_task_data(data: TaskData, task: Task) -> None:
    """Reject data a model cannot learn from, with one line naming the array and the problem.

    Checks: numeric finite features (NaN allowed where a table's layout imputes them),
    equal sample counts in x and y, identical input shapes across splits, finite labels,
    class labels inside the range seen in training.

    Raises:
        ConfigError: on the first problem found.
    """
    where = data.origin
    ref = data.x_train.shape[1:]
    text = is_text(data.x_train)
    if not text and data.x_train.ndim not in (2, 3, 4):
        raise ConfigError(f"{where}: x_train has shape {data.x_train.shape}; expected (N, d), (N, H, W) or (N, C, H, W)")
    if data.table is not None and (data.x_train.ndim != 2 or data.x_train.shape[1] != data.table.width):
        raise ConfigError(f"{where}: x_train has shape {data.x_train.shape} but its table layout has {data.table.width} columns")
    imputed = data.table is not None and data.table.impute is not None
    for split in SPLITS:
        x, y = data.split(split)
        if x is None and y is None:
            if split == "val":
                continue
            raise ConfigError(f"{where}: missing x_{split} and y_{split}")
        if x is None or y is None:
            missing = "x" if x is None else "y"
            raise ConfigError(f"{where}: {missing}_{split} is missing while its pair is given")
        if text:
            if not is_text(x) or not all(isinstance(t, str) for t in x):
                raise ConfigError(f"{where}: x_{split} must hold one string per sample like x_train; got dtype {x.dtype}, shape {x.shape}")
        elif not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise ConfigError(f"{where}: x_{split} has dtype {x.dtype}; expected numbers")
        if len(x) != len(y):
            raise ConfigError(f"{where}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
        if len(x) == 0:
            raise ConfigError(f"{where}: x_{split} is empty")
        if x.shape[1:] != ref:
            raise ConfigError(f"{where}: x_{split} samples have shape {x.shape[1:]} but x_train samples have {ref}")
        # Integers are always finite: skipping them keeps a memory-mapped image array on disk.
        bad = 0 if text or x.dtype.kind in "biu" else int(np.isinf(x).sum()) if imputed else int(np.size(x) - np.isfinite(x).sum())
        if bad:
            what = "infinite" if imputed else "NaN or infinite"
            raise ConfigError(f"{where}: x_{split} has {bad} {what} values; expected finite features")
        if not np.issubdtype(y.dtype, np.number):
            raise ConfigError(f"{where}: y_{split} has dtype {y.dtype}; expected numeric labels")
        if np.isinf(y).any():
            raise ConfigError(f"{where}: y_{split} has infinite labels; expected numbers (NaN marks a missing label)")
        have = labelled(y, task.kind)
        if not have.any():
            raise ConfigError(f"{where}: y_{split} has no labels for task '{task.name}' (every value is missing)")
        y = y[have]
        if task.kind in ("classification", "binary") and split == "train" and len(np.unique(y)) < 2:
            raise ConfigError(
                f"{where}: every label in y_train is {y[0].item()!r}, one class; task '{task.name}' needs at least two classes to learn "
                "(set kind: regression for a numeric target)"
            )
        if task.kind in ("classification", "binary"):
            if np.any(np.mod(y, 1) != 0):
                raise ConfigError(f"{where}: y_{split} has non-integer labels (e.g. {y[np.mod(y, 1) != 0][0]!r}); task '{task.name}' is {task.kind}")
            unknown = y[~np.isin(y, np.asarray(task.classes, dtype=np.float64))]
            if len(unknown):
                listed = ", ".join(f"{c:g}" for c in task.classes[:10]) + (", ..." if len(task.classes) > 10 else "")
                raise ConfigError(
                    f"{where}: label {unknown[0].item()!r} in y_{split} is not a class of task '{task.name}' "
                    f"(classes from y_train: {listed}; -1 or NaN mark a missing label)"
                )
        elif y.reshape(len(y), -1).shape[1] != task.n_outputs:
            raise ConfigError(f"{where}: y_{split} has {y.reshape(len(y), -1).shape[1]} targets per row, y_train has {task.n_outputs}")

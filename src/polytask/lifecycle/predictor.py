"""A saved model in use: ``polytask.load(DIR)`` gives a :class:`SavedModel` that applies the
saved preprocessing itself and predicts every task it has a head for.

Example:
    >>> import polytask
    >>> model = polytask.load("models/digits")  # doctest: +SKIP
    >>> model.predict(images)  # class labels of the model's target  # doctest: +SKIP
    >>> model.predict_proba(images, task="digits")  # [N, classes]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.targets import predictions
from polytask.core.tasks import Task
from polytask.data.preprocess import InputTransform
from polytask.data.tabular import table_rows
from polytask.lifecycle.drift import check, feature_names, features, read_reference, summary_line, uses_embeddings
from polytask.lifecycle.modeldir import build_model, class_labels, input_shape_of, read_meta, read_weights, task_from_record
from polytask.methods.backbones.tokenizers import text_encoder
from polytask.training.devices import resolve_device
from polytask.training.evaluate import EVAL_BATCH

Inputs = Any  # an array, a pandas DataFrame, or a list of texts


class SavedModel:
    """A model directory loaded for prediction.

    Attributes:
        path: the model directory.
        meta: its ``model.json``.
        model: the rebuilt ``nn.Module`` (eval mode).
        tasks: the tasks it has heads for, by name.
        targets: the tasks it was trained for (the others are sources it learned from).
    """

    def __init__(self, path: str | Path, backbone: nn.Module | None = None, device: str = "cpu"):
        self.path = Path(path)
        self.meta = read_meta(self.path)
        self.model = build_model(self.meta, read_weights(self.path), backbone)
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.tasks: dict[str, Task] = {n: task_from_record(n, self.meta["tasks"][n]) for n in self.meta["heads"]}
        self.targets: list[str] = list(self.meta["targets"])
        self.transforms = {n: InputTransform.from_record(self.meta["tasks"][n]["input"]) for n in self.tasks}
        self.backbone_module = backbone  # the user's own shared layers, when the model was trained on them
        self._tokenizers: dict[str, Callable] = {}

    def __repr__(self) -> str:
        return f"SavedModel('{self.path}', strategy={self.meta['strategy']!r}, targets={self.targets})"

    @property
    def input_shape(self) -> tuple:
        """One sample as the backbone reads it (after the preprocessing)."""
        return input_shape_of(self.meta)

    def labels(self, task: str | None = None) -> list[str | int | float] | None:
        """The label each class index of ``task`` stands for (None for regression)."""
        return class_labels(self.meta["tasks"][self._task(task)])

    # ---- inputs -----------------------------------------------------------------------

    def _task(self, task: str | None) -> str:
        if task is None:
            return self.targets[0]
        if task not in self.tasks:
            raise ConfigError(f"task '{task}': this model predicts {', '.join(self.tasks)}")
        return task

    def _tokenizer(self, task: str) -> Callable:
        if task not in self._tokenizers:
            spec = self.transforms[task].tokenizer or {}
            tok = text_encoder(spec["backbone"], **spec.get("options", {})) if spec.get("backbone") else getattr(self.backbone_module, "tokenizer", None)
            if not callable(tok):
                raise ConfigError("this text model's tokenizer comes with your backbone module; pass it: polytask.load(DIR, backbone=module)")
            self._tokenizers[task] = tok
        return self._tokenizers[task]

    def rows(self, x: Inputs, task: str | None = None) -> np.ndarray | list[str]:
        """Inputs as the training data was loaded: a DataFrame's feature columns (by the saved
        names) laid out as the training table; arrays and texts as they are.

        Raises:
            ConfigError: a DataFrame without a column the model reads.
        """
        t = self.transforms[self._task(task)]
        if not hasattr(x, "columns"):
            return list(x) if t.kind == "text" and not isinstance(x, np.ndarray) else x
        if not t.columns:
            # Trained on arrays: a table of as many numeric columns is read as that array.
            numeric = all(np.issubdtype(dt, np.number) for dt in x.dtypes)
            if t.kind in ("numeric", "table") and numeric and x.shape[1] in (t.shape[0], len(t.encoder.layout.numeric) if t.encoder else -1):
                return x.to_numpy(np.float32)
            raise ConfigError(f"this model was trained on arrays of shape (N, {', '.join(map(str, t.raw_shape))}), not on named columns: pass such an array")
        missing = [c for c in t.columns if c not in x.columns]
        if missing:
            raise ConfigError(f"input has no column(s) {', '.join(missing)}; the model reads {', '.join(t.columns)}")
        if t.kind == "text":
            return x[t.columns[0]].fillna("").astype(str).tolist()
        if t.encoder is not None:
            return table_rows(t.encoder.layout, x)
        try:
            return x[list(t.columns)].to_numpy(np.float32)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"input columns {', '.join(t.columns)} must hold numbers ({e})") from None

    def transform(self, x: Inputs, task: str | None = None) -> torch.Tensor:
        """The tensor the model reads for inputs ``x`` of ``task`` (the saved preprocessing)."""
        name = self._task(task)
        t = self.transforms[name]
        rows = self.rows(x, name)
        if t.kind != "text":
            return t(rows)
        if isinstance(rows, np.ndarray) and np.issubdtype(rows.dtype, np.number):
            raise ConfigError(f"inputs of dtype {rows.dtype}: this model reads texts")
        ids = t(rows, self._tokenizer(name))
        pad = getattr(self._tokenizer(name), "pad_id", 0)
        used = (ids != pad).any(dim=0).nonzero()  # trimmed to the longest text, as a split in training
        return ids[:, : int(used.max()) + 1 if len(used) else 1]

    def check_drift(self, x: Inputs, task: str | None = None) -> dict[str, Any]:
        """Compare inputs ``x`` with the training rows kept in the model directory
        (:func:`polytask.lifecycle.drift.check`); ``line`` says the answer in one sentence."""
        name = self._task(task)
        return self.drift_of(self.transform(x, name), name)

    def drift_of(self, inputs: torch.Tensor, task: str | None = None) -> dict[str, Any]:
        """:meth:`check_drift` of inputs already preprocessed (:meth:`transform`)."""
        name = self._task(task)
        reference = read_reference(self.path)[name]
        kind = self.transforms[name].kind
        result = check(reference, features(self.model, inputs.to(self.device), kind), feature_names(self.transforms[name], reference.shape[1]))
        return {**result, "task": name, "line": summary_line(name, result, uses_embeddings(kind))}

    # ---- outputs ----------------------------------------------------------------------

    @torch.no_grad()
    def outputs(self, x: Inputs, task: str | None = None, batch_size: int = EVAL_BATCH, progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """Head outputs (logits, or standardized values) of ``task`` for inputs ``x``, in batches."""
        name = self._task(task)
        return self.outputs_of(self.transform(x, name), name, batch_size, progress)

    @torch.no_grad()
    def outputs_of(self, inputs: torch.Tensor, task: str, batch_size: int = EVAL_BATCH, progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """:meth:`outputs` of inputs already preprocessed (:meth:`transform`)."""
        name = self._task(task)
        outs = []
        for batch in inputs.split(batch_size):
            outs.append(self.model(batch.to(self.device), name).float().cpu())
            if progress is not None:
                progress(len(batch))
        return torch.cat(outs) if outs else torch.empty(0, self.tasks[name].n_outputs)

    def probabilities(self, outputs: torch.Tensor, task: str | None = None) -> np.ndarray:
        """Class probabilities ``[N, C]`` from head outputs of ``task`` (binary: ``[N, 2]``)."""
        name = self._task(task)
        spec = self.tasks[name]
        if spec.kind == "regression":
            raise ConfigError(f"task '{name}' is a regression: it has values, not probabilities (use predict)")
        p = predictions(spec, outputs)
        return np.stack([1 - p, p], axis=1) if spec.kind == "binary" else p

    def values(self, outputs: torch.Tensor, task: str | None = None) -> np.ndarray:
        """Regression values ``[N, K]`` in the target's units from head outputs of ``task``."""
        return predictions(self.tasks[self._task(task)], outputs)

    def predict_proba(self, x: Inputs, task: str | None = None, **kw) -> np.ndarray | dict[str, np.ndarray]:
        """Class probabilities ``[N, C]`` of ``task`` (binary: ``[N, 2]``); with ``task=None`` and
        several targets, a dict of them per target.

        Raises:
            ConfigError: a regression task (it has no probabilities).
        """
        if task is None and len(self.targets) > 1:
            return {t: self.predict_proba(x, t, **kw) for t in self.targets}
        name = self._task(task)
        if self.tasks[name].kind == "regression":
            raise ConfigError(f"task '{name}' is a regression: it has values, not probabilities (use predict)")
        return self.probabilities(self.outputs(x, name, **kw), name)

    def predict(self, x: Inputs, task: str | None = None, **kw) -> np.ndarray | dict[str, np.ndarray]:
        """Predicted labels of ``task`` (the class labels of the training data: its string
        names, or its label values), or values in the target's units for regression
        (``[N]``, or ``[N, K]`` for K outputs); with ``task=None`` and several targets, a
        dict of them per target."""
        if task is None and len(self.targets) > 1:
            return {t: self.predict(x, t, **kw) for t in self.targets}
        name = self._task(task)
        if self.tasks[name].kind == "regression":
            values = self.values(self.outputs(x, name, **kw), name)
            return values[:, 0] if values.shape[1] == 1 else values
        index = self.predict_proba(x, name, **kw).argmax(axis=1)
        labels = self.labels(name)
        return np.asarray(labels, dtype=object if isinstance(labels[0], str) else None)[index]


def load(path: str | Path, backbone: nn.Module | None = None, device: str = "cpu") -> SavedModel:
    """Load a model directory written by ``polytask train`` for prediction.

    Args:
        path: the model directory.
        backbone: the shared layers, for a model trained on your own backbone module
            (the saved weights are loaded into it).
        device: where it runs (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``auto``).

    Raises:
        ConfigError: not a model directory, or weights that do not fit its description.
    """
    return SavedModel(path, backbone, device)

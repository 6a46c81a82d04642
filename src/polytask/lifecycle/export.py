"""``polytask export --onnx``: a saved model as one ONNX graph, for ONNX Runtime and the
serving stacks that read ONNX.

The graph holds the preprocessing a graph can express: an image's crop, resize (bilinear,
antialiased when shrinking, as in training) and scaling; the standardization of numeric
columns. It has one input per distinct input preprocessing (``x_<task>``, named by the
first task that reads it: the tasks of one multi-task model on the same inputs share it
and one backbone pass) and one output per task: class probabilities ``[N, C]`` (binary:
``[N, 2]``) or values in the target's units ``[N, K]``. What a graph cannot express stays
outside, and ``model.json``'s ``onnx`` record says what each input expects: a table's
rows already encoded (missing values imputed, levels as one-hot or codes:
``SavedModel.rows`` then the table encoder), and token ids for text (the tokenizer).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.io import write_atomic
from polytask.data.preprocess import InputTransform
from polytask.lifecycle.modeldir import META
from polytask.lifecycle.predictor import SavedModel

OPSET = 18  # Resize with antialias


class GraphInput(nn.Module):
    """The preprocessing of one input inside the graph (see the module docstring)."""

    def __init__(self, t: InputTransform):
        super().__init__()
        self.kind, self.crop, self.image_size = t.kind, t.crop, t.image_size
        self.grey = t.kind == "image" and len(t.shape) == 2
        scale = torch.tensor(t.scale if t.scale is not None else 1.0, dtype=torch.float32)
        self.register_buffer("scale", scale)
        self.register_buffer("mean", torch.as_tensor(t.mean if t.mean is not None else [], dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(t.std if t.std is not None else [], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "image":
            if self.crop:
                x = x[..., self.crop : -self.crop, self.crop : -self.crop]
            if self.grey:
                x = x.unsqueeze(1)
            size = self.image_size
            if size is not None and tuple(x.shape[-2:]) != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < max(x.shape[-2:]))
            return x / self.scale
        n = self.mean.shape[0]
        if self.kind == "numeric" or (self.kind == "table" and n == x.shape[1]):
            return (x - self.mean) / self.std
        if self.kind == "table" and n:
            return torch.cat([(x[:, :n] - self.mean) / self.std, x[:, n:]], dim=1)
        return x


class ExportedModel(nn.Module):
    """The saved model with its graph preprocessing and probability outputs: ``forward(*inputs)``
    returns one output per task, in ``tasks`` order."""

    def __init__(self, saved: SavedModel, tasks: list[str], groups: dict[str, list[str]]):
        super().__init__()
        self.model = saved.model
        self.specs = {n: saved.tasks[n] for n in tasks}
        self.groups = groups
        self.inputs = nn.ModuleDict({first: GraphInput(saved.transforms[first]) for first in groups})
        self.shared = getattr(saved.model, "shares_representation", False)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out: dict[str, torch.Tensor] = {}
        for (first, members), x in zip(self.groups.items(), xs):
            z = self.inputs[first](x)
            if self.shared:  # one backbone pass for every task reading this input
                h = self.model.backbone(z)
                heads = {t: self.model.heads[t](h) for t in members}
            else:
                heads = {t: self.model(z, t) for t in members}
            for t, logits in heads.items():
                out[t] = self._output(t, logits)
        return tuple(out[t] for t in self.specs)

    def _output(self, task: str, logits: torch.Tensor) -> torch.Tensor:
        spec = self.specs[task]
        if spec.kind == "classification":
            return torch.softmax(logits, dim=1)
        if spec.kind == "binary":
            p = torch.sigmoid(logits[:, :1])
            return torch.cat([1 - p, p], dim=1)
        return logits * spec.y_scale + spec.y_shift


def input_groups(saved: SavedModel, tasks: list[str]) -> dict[str, list[str]]:
    """Tasks grouped by identical input preprocessing, each group named by its first task."""
    groups: dict[str, list[str]] = {}
    keys: dict[str, str] = {}
    for t in tasks:
        key = json.dumps(saved.transforms[t].to_record(), sort_keys=True)
        first = keys.setdefault(key, t)
        groups.setdefault(first, []).append(t)
    return groups


def example_input(t: InputTransform, rows: int = 2) -> torch.Tensor:
    """A batch of inputs of the shape and type the graph input of ``t`` takes."""
    if t.kind == "text":
        return torch.ones(rows, 8, dtype=torch.long)
    width = t.encoder.layout.width if t.encoder is not None else None
    shape = (width,) if width is not None else t.raw_shape
    return torch.rand(rows, *shape) * (t.scale or 1.0)


def input_record(t: InputTransform) -> dict[str, Any]:
    """What the graph input of ``t`` expects, for ``model.json``."""
    if t.kind == "image":
        return {"expects": "images as loaded (pixels), float32", "shape": ["N", *t.raw_shape]}
    if t.kind == "text":
        return {"expects": "token ids of the model's tokenizer, int64", "shape": ["N", "tokens"], "tokenizer": t.tokenizer}
    if t.kind == "table":
        return {"expects": "table rows encoded by the saved table encoder (missing values filled, levels coded), float32", "shape": ["N", t.shape[0]]}
    return {"expects": "feature columns, float32", "shape": ["N", t.shape[0]], "columns": list(t.columns) if t.columns else None}


@contextmanager
def _quiet(*loggers: str):
    """The exporter's own log lines (its progress, optional operators it skips) kept off the
    terminal; its errors still raise."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def export_onnx(model_dir: str | Path, out: str | Path, tasks: list[str] | None = None) -> dict[str, Any]:
    """Write the model in ``model_dir`` as an ONNX graph to ``out``; record it in ``model.json``.

    Returns:
        The record: the graph's inputs (what each expects) and outputs.

    Raises:
        ConfigError: onnx or onnxscript missing, an unknown task, or a model the exporter
            cannot trace.
    """
    try:
        import onnxscript  # noqa: F401  (torch's exporter writes the graph through it)
    except ImportError:
        raise ConfigError("exporting to ONNX needs onnx and onnxscript: pip install 'polytask[onnx]'") from None
    saved = SavedModel(model_dir)
    tasks = list(tasks or saved.tasks)
    for t in tasks:
        if t not in saved.tasks:
            raise ConfigError(f"--task '{t}': this model predicts {', '.join(saved.tasks)}")
    groups = input_groups(saved, tasks)
    module = ExportedModel(saved, tasks, groups).eval()
    examples = tuple(example_input(saved.transforms[first]) for first in groups)
    names = [f"x_{first}" for first in groups]
    # Each input its own batch size (one model's tasks are often fed separately) and, for token ids, width.
    dynamic = tuple(
        {0: torch.export.Dim(f"batch_{i}"), **({1: torch.export.Dim(f"tokens_{i}")} if saved.transforms[f].kind == "text" else {})}
        for i, f in enumerate(groups)
    )
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), _quiet("torch.onnx", "torch.export", "torch._dynamo"):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, examples, dynamo=True, input_names=names, output_names=tasks, dynamic_shapes=(dynamic,), opset_version=OPSET)
    except Exception as e:  # the exporter's errors are long; the first line says what failed
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"the model could not be exported to ONNX ({type(e).__name__}: {first})") from None
    buf = io.BytesIO()
    program.save(buf)
    write_atomic(Path(out), buf.getvalue())
    record = {
        "file": str(out),
        "opset": OPSET,
        "inputs": {f"x_{first}": {**input_record(saved.transforms[first]), "tasks": members} for first, members in groups.items()},
        "outputs": {t: "class probabilities" if saved.tasks[t].kind != "regression" else "values in the target's units" for t in tasks},
    }
    meta = {**saved.meta, "onnx": record}
    write_atomic(Path(model_dir) / META, json.dumps(meta, indent=2))
    return record

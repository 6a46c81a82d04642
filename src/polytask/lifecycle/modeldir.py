"""A model directory: a trained model with everything needed to use it elsewhere.

- ``model.safetensors``: every weight (shared layers, each task's head, LoRA adapters
  already merged), readable without unpickling anything;
- ``model.json``: what rebuilding and using it needs (the tasks with their kinds, classes
  and names, metric and target scaling; the backbone and architecture with their options;
  each task's input preprocessing fitted on the training rows; the strategy and its
  settings; the study's fingerprint, the versions, the validation and test metrics).

One multi-task model is one directory with a head per task. :func:`build_model` rebuilds
the architecture from ``model.json`` and loads the weights; the user's own backbone module,
which no name can rebuild, is passed back in by the caller.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.inputs import TEXT_SHAPE
from polytask.core.io import write_atomic
from polytask.core.tasks import Task
from polytask.methods.architectures.base import build_multitask_model
from polytask.methods.architectures.multitask import FeatureBackbone, MultiTaskModel
from polytask.methods.backbones import create_backbone

MODEL_FORMAT = "polytask-model/2"
WEIGHTS, META = "model.safetensors", "model.json"


def task_record(task: Task, class_names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A task as ``model.json`` keeps it (:func:`task_from_record` reads it back)."""
    return {
        "kind": task.kind,
        "n_outputs": task.n_outputs,
        "classes": list(task.classes) if task.classes is not None else None,
        "class_names": list(class_names) if class_names else None,
        "metric": task.metric,
        "metric_name": task.metric_name,
        "y_shift": task.y_shift,
        "y_scale": task.y_scale,
    }


def task_from_record(name: str, r: dict[str, Any]) -> Task:
    classes = tuple(r["classes"]) if r.get("classes") is not None else None
    return Task(name, r["kind"], int(r["n_outputs"]), float(r["y_shift"]), float(r["y_scale"]), classes, r.get("metric_name"))


def class_labels(r: dict[str, Any]) -> list[str | int | float] | None:
    """Per class index of task record ``r``, the label a prediction reports: the file's
    string label, else the label value (``3``, ``-5``, ``0.5``). None for regression."""
    if r["kind"] == "regression":
        return None
    n = 2 if r["kind"] == "binary" else int(r["n_outputs"])
    values = r.get("classes") or list(range(n))
    names = r.get("class_names")
    if names:
        return [names[int(v)] for v in values]
    return [int(v) if float(v).is_integer() else float(v) for v in values]


def save_model_dir(out: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``model.json`` into ``out``, each atomically.

    Raises:
        ConfigError: ``out`` is a file.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file; expected a model directory")
    out.mkdir(parents=True, exist_ok=True)
    # Tensors that share memory (tied weights) are written once each: safetensors refuses shared storage.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    write_atomic(out / WEIGHTS, save_safetensors(state, metadata={"format": MODEL_FORMAT}))
    write_atomic(out / META, json.dumps({"format": MODEL_FORMAT, **meta}, indent=2))


def read_meta(path: str | Path) -> dict[str, Any]:
    """``model.json`` of model directory ``path``.

    Raises:
        ConfigError: no model directory there, or one polytask cannot read.
    """
    path = Path(path)
    if not (path / META).is_file():
        raise ConfigError(f"{path}: not a polytask model directory (no {META}; write one with 'polytask train')")
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path / META}: not readable JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ConfigError(f"{path / META}: format {found!r}, expected {MODEL_FORMAT!r}")
    return meta


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in ``model.safetensors`` of ``path``."""
    file = Path(path) / WEIGHTS
    try:
        return load_safetensors(file.read_bytes())
    except OSError as e:
        raise ConfigError(f"{file}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # a torn or foreign file
        raise ConfigError(f"{file}: not a safetensors file ({type(e).__name__}: {e})") from None


def input_shape_of(meta: dict[str, Any]) -> tuple:
    shape = meta["build"]["input_shape"]
    return TEXT_SHAPE if list(shape) == list(TEXT_SHAPE) else tuple(shape)


def build_model(meta: dict[str, Any], state: dict[str, torch.Tensor] | None = None, backbone: nn.Module | None = None) -> nn.Module:
    """The model ``meta`` describes, with weights ``state`` loaded (strictly) when given.

    Args:
        meta: ``model.json``.
        state: the weights (:func:`read_weights`).
        backbone: the shared layers for a model trained on the user's own module (its
            weights are then loaded from ``state`` like the rest).

    Raises:
        ConfigError: a backbone no name rebuilds and none given, or weights that do not
            fit the rebuilt architecture.
    """
    build = meta["build"]
    shape = input_shape_of(meta)
    tasks = [task_from_record(n, meta["tasks"][n]) for n in meta["heads"]]
    name = build["backbone"]

    def new_backbone() -> nn.Module:
        if backbone is None and name is None:
            raise ConfigError("this model was trained on your own backbone module; pass it: polytask.load(DIR, backbone=module)")
        net = backbone if backbone is not None else create_backbone(name, shape, pretrained=False, **build["backbone_options"])
        if build.get("features"):
            # Feature extraction: frozen layers, their features standardized by buffers (loaded below).
            n = net.out_features
            return FeatureBackbone(n, torch.zeros(n), torch.ones(n), inner=net)
        return net

    if build["architecture"] == "hard":
        model = MultiTaskModel(new_backbone(), tasks)
    else:
        model = build_multitask_model(build["architecture"], new_backbone, shape, tasks, **build["architecture_options"])
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ConfigError(f"the weights do not fit the model model.json describes ({first})") from None
    return model.eval()

"""What a study's results depend on, hashed by content: the resume fingerprint.

A finished run is reused only under the same fingerprint. It hashes the data (array
bytes, wherever the files live, and how a table's missing values are imputed), the
user's module (its classes, their code and parameter shapes), the weights of every named
pretrained backbone, and an explicit list of the settings that change numbers. Left out
on purpose: the grid's extent (seeds, fractions, strategies), names, ``save_models``,
``allow_overlap`` and the analysis settings (margins, corrections), which change verdicts
but not runs.
"""

from __future__ import annotations

import inspect
import platform
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask._version import __version__
from polytask.config import StudyConfig
from polytask.core.digest import array_digest, state_digest, value_digest
from polytask.core.tasks import Task
from polytask.data.arrays import SPLITS, TaskData

# Config sections that change a run's numbers.
NUMBER_SETTINGS = ("model", "train", "mtl", "fine_tune", "domain_adapt", "sources", "validation", "tune")
# Per task, besides its data's content and its (resolved) kind.
TASK_SETTINGS = ("role", "augment", "metric")


def data_digest(data: TaskData) -> str:
    """Digest of a task's arrays: inputs and labels of every split."""
    return array_digest(*(a for split in SPLITS for a in data.split(split)))


def module_digest(net: nn.Module) -> str:
    """Digest of a module's architecture: its tree, its parameter shapes, and the code of
    every class in it that is not PyTorch's own (a changed ``forward`` changes numbers)."""
    code = []
    for cls in sorted({type(m) for m in net.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        name = f"{cls.__module__}.{cls.__qualname__}"
        try:
            source = "" if cls.__module__.startswith("torch.") else inspect.getsource(cls)
        except (OSError, TypeError):
            source = ""  # defined interactively: its name and shapes still count
        code.append((name, source))
    shapes = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    return value_digest({"tree": repr(net), "shapes": shapes, "code": code})


def study_fingerprint(
    config: StudyConfig,
    data: dict[str, TaskData],
    tasks: dict[str, Task],
    unlabeled: dict[str, str] | None = None,
    backbone: str | None = None,
    sources: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The fingerprint and the parts it hashes.

    Args:
        config: the study's config.
        data: each task's loaded arrays.
        tasks: each task as inferred (its kind counts, whether given or inferred).
        unlabeled: digests of separately loaded unlabelled inputs, per task.
        backbone: the study's backbone as it is built: the digest of the user's module or
            of pretrained weights, else the registered name (which may be given in Python),
            replacing ``model.backbone``.
        sources: digests of the named pretrained backbones transfer strategies start
            from, by the name strategies use (``fine-tune:<name>``), replacing ``sources``.
    """
    dumped = config.model_dump(mode="json", by_alias=False)
    task_parts = {}
    for name, tcfg in dumped["tasks"].items():
        part = {k: tcfg.get(k) for k in TASK_SETTINGS}
        part["kind"] = tasks[name].kind
        part["data"] = data_digest(data[name])
        # A table's rows keep NaN where a value is missing, so how each run fills it
        # (``data.impute``: median or most_frequent) changes numbers the bytes do not show.
        # No key without imputation, so fingerprints from before the setting stay the same.
        impute = data[name].table.impute if data[name].table is not None else None
        if impute is not None:
            part["impute"] = impute
        u = tcfg.get("unlabeled")
        part["unlabeled"] = (unlabeled or {}).get(name) if isinstance(u, dict) else u
        task_parts[name] = part
    # The order of the tasks counts: static and tuned task weights are matched by position,
    # and it sets the heads' initialization (mappings are hashed with sorted keys).
    parts = {"tasks": task_parts, "task_order": list(dumped["tasks"]), **{k: dumped[k] for k in NUMBER_SETTINGS if k in dumped}}
    if backbone is not None:
        parts["model"] = {**parts["model"], "backbone": backbone}
    parts["sources"] = dict(sorted((sources or {}).items()))
    # Where runs train is the machine's business (each row records its device), and a time
    # budget changes no finished run's numbers (a run over it fails; a larger budget reruns
    # only the failed runs); float32, the default precision, is left out so that studies
    # fingerprinted before the setting existed keep their fingerprint.
    parts["train"] = {k: v for k, v in parts["train"].items() if k not in ("device", "max_minutes") and not (k == "precision" and v == "32")}
    return value_digest(parts)[:12], parts


def versions() -> dict[str, str]:
    """Versions of what turns data into numbers, recorded with every run."""
    return {"polytask": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def pretrained_digest(net: nn.Module) -> str:
    """Digest of a pretrained backbone: its architecture and its weights."""
    return value_digest([module_digest(net), state_digest(net)])

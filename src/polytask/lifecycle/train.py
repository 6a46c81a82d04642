"""``polytask train``: one run of a study's grid, trained and saved as a model directory.

A model directory holds ``weights.pt`` (the model's state dict, readable with
``torch.load(weights_only=True)``) and ``model.json`` (what rebuilding and using the model
needs: the tasks with their kinds, classes and target scaling, the backbone and its
options, the strategy, fraction and seed, the study's fingerprint and the versions, the
validation and test metrics).

Under ``torchrun --nproc-per-node N`` every process trains its shard of each batch
(:mod:`polytask.training.distributed`) and the first writes the directory.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from polytask.core.errors import ConfigError
from polytask.core.io import write_atomic
from polytask.strategies import RunOutcome, is_joint
from polytask.study.fingerprint import versions
from polytask.study.plan import Job
from polytask.study.resolve import backbone_options
from polytask.study.runner import Study
from polytask.training.devices import device_name, resolve_device

MODEL_FORMAT = "polytask-model/1"


def pick_job(study: Study, task: str | None, strategy: str | None, fraction: float, seed: int) -> Job:
    """The job ``polytask train`` runs: ``task`` (default the first target) with ``strategy``
    (default the study's first) at ``fraction`` and ``seed``.

    Raises:
        ConfigError: a task that is not a target, a strategy the study does not run, or
            a fraction or seed out of range.
    """
    cfg = study.config
    targets = list(cfg.targets)
    task = task or targets[0]
    if task not in targets:
        raise ConfigError(f"--task '{task}' is not a target of the study (targets: {', '.join(targets)})")
    strategy = strategy or cfg.strategies[0]
    if strategy not in cfg.strategies:
        raise ConfigError(f"--strategy '{strategy}' is not one of the study's strategies ({', '.join(cfg.strategies)})")
    if not 0 < fraction <= 1:
        raise ConfigError(f"--fraction must be in (0, 1], got {fraction}")
    if seed < 0:
        raise ConfigError(f"--seed must be 0 or more, got {seed}")
    return Job(strategy, fraction, seed, tuple(targets) if is_joint(strategy) else (task,))


def train_model(study: Study, out: str | Path, task: str | None = None, strategy: str | None = None, fraction: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Train one run and write its model directory to ``out`` (the first process only).

    Returns:
        The metadata written to ``model.json``.
    """
    job = pick_job(study, task, strategy, fraction, seed)
    study.load()
    with tempfile.TemporaryDirectory(prefix="polytask-train-") as work:  # caches of in-study pretraining
        outcomes = study.train_job(Path(work), job)
    first = outcomes[job.tasks[0]]
    meta = describe(study, job, outcomes)
    if not dist.is_initialized() or dist.get_rank() == 0:
        save_model_dir(Path(out), first.model, meta)
    return meta


def describe(study: Study, job: Job, outcomes: dict[str, RunOutcome]) -> dict[str, Any]:
    """``model.json``: what the model is, how it was trained and how well it did."""
    _, tasks = study.load()
    cfg = study.config
    model = outcomes[job.tasks[0]].model
    heads = list(getattr(model, "heads", {}).keys()) or list(job.tasks)
    user = study.backbone is not None and not isinstance(study.backbone, str)
    name = study.backbone if isinstance(study.backbone, str) else cfg.model.backbone
    return {
        "format": MODEL_FORMAT,
        "strategy": job.strategy,
        "fraction": job.fraction,
        "seed": job.seed,
        "targets": list(job.tasks),
        "tasks": {
            n: {
                "kind": t.kind,
                "n_outputs": t.n_outputs,
                "classes": list(t.classes) if t.classes is not None else None,
                "metric": t.metric,
                "y_shift": t.y_shift,
                "y_scale": t.y_scale,
            }
            for n, t in tasks.items()
            if n in heads
        },
        "backbone": {"name": "user module" if user else name, "options": {} if user else backbone_options(cfg.model, name)},
        "architecture": cfg.model.architecture,
        "input_shape": list(study.input_shape(job.tasks[0])),
        "metrics": {n: {"val": o.val, "test": o.test} for n, o in outcomes.items()},
        "fingerprint": study.fingerprint,
        "versions": {**versions(), "device": device_name(resolve_device(cfg.train.device))},
        "processes": dist.get_world_size() if dist.is_initialized() else 1,
    }


def save_model_dir(out: Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Write ``weights.pt`` and ``model.json`` into ``out``, each atomically."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file; expected a model directory")
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    write_atomic(out / "weights.pt", buf.getvalue())
    write_atomic(out / "model.json", json.dumps(meta, indent=2))


def start_processes(device: str) -> str:
    """Join the process group ``torchrun`` set up (gloo on the CPU, NCCL on GPUs); the
    device this process trains on (its own GPU under CUDA). Outside torchrun: ``device``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    on_gpu = resolve_device(device).type == "cuda"
    dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if on_gpu else device


def stop_processes() -> None:
    """Leave the process group, once every process is done."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

"""``polytask train``: the model a study recommends (or any run of its grid), trained and
saved as a model directory (:mod:`polytask.lifecycle.modeldir`).

With no strategy named, the study's own answer is trained: read from the study folder's
``summary.json`` (which must belong to this config: same fingerprint), the study-level
answer when one multi-task model is recommended for all targets, else the task's
recommendation at the fraction; with the values ``tune:`` chose for it when the study was
tuned.

Under ``torchrun --nproc-per-node N`` every process trains its shard of each batch
(:mod:`polytask.training.distributed`) and the first writes the directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from polytask.core.errors import ConfigError
from polytask.lifecycle.drift import features, sample_rows, save_reference
from polytask.lifecycle.memory import REHEARSAL_ROWS, Memory, Rows, sample
from polytask.lifecycle.modeldir import save_model_dir, task_record
from polytask.methods.architectures.multitask import FeatureBackbone, MultiTaskModel
from polytask.methods.backbones.run import saved_recipe
from polytask.strategies import RunOutcome, is_joint, transfer_source, uses_transfer_source
from polytask.study.fingerprint import versions
from polytask.study.plan import Job
from polytask.study.runner import Study
from polytask.study.store import STUDY_FILE
from polytask.training.devices import device_name, resolve_device

SUMMARY_FILE = "summary.json"


def recommended(study: Study, folder: Path, task: str, fraction: float) -> tuple[str, str]:
    """The strategy the study in ``folder`` recommends for ``task`` at ``fraction``, and why.

    The study-level answer comes first: one multi-task model for every target, when the
    study found it not worse than a model per target. Otherwise the task's own answer.

    Raises:
        ConfigError: no finished study for this config in ``folder``, or one without
            that fraction.
    """
    try:
        record = json.loads((folder / STUDY_FILE).read_text())
        summary = json.loads((folder / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        raise ConfigError(
            f"no study results in '{folder}' to take the recommendation from: run 'polytask compare' with this config (--out {folder}), or name a --strategy"
        ) from None
    if record.get("fingerprint") != study.fingerprint:
        raise ConfigError(
            f"'{folder}' holds a study of another config or data (fingerprint {record.get('fingerprint')}, this one's {study.fingerprint}): "
            "its recommendation does not apply; rerun 'polytask compare' or name a --strategy"
        )
    for answer in summary.get("study_answer", []):
        if answer["fraction"] == fraction and answer.get("recommended"):
            return answer["strategy"], answer["answer"]
    for rec in summary.get("recommendations", []):
        if rec["task"] == task and rec["fraction"] == fraction and rec.get("best"):
            return rec["best"], rec["reason"]
    fractions = sorted({r["fraction"] for r in summary.get("recommendations", []) if r["task"] == task})
    raise ConfigError(
        f"the study in '{folder}' has no recommendation for '{task}' at fraction {fraction:g} "
        f"(its fractions: {', '.join(f'{f:g}' for f in fractions) or 'none'}); pass one of them with --fraction, or name a --strategy"
    )


def pick_job(study: Study, task: str | None, strategy: str | None, fraction: float, seed: int) -> Job:
    """The job ``polytask train`` runs: ``task`` (default the first target) with ``strategy``
    at ``fraction`` and ``seed``.

    Raises:
        ConfigError: a task that is not a target, a strategy the study does not run, or
            a fraction or seed out of range.
    """
    cfg = study.config
    targets = list(cfg.targets)
    task = task or targets[0]
    if task not in targets:
        raise ConfigError(f"--task '{task}' is not a target of the study (targets: {', '.join(targets)})")
    if strategy not in cfg.strategies:
        raise ConfigError(f"--strategy '{strategy}' is not one of the study's strategies ({', '.join(cfg.strategies)})")
    if not 0 < fraction <= 1:
        raise ConfigError(f"--fraction must be in (0, 1], got {fraction}")
    if seed < 0:
        raise ConfigError(f"--seed must be 0 or more, got {seed}")
    return Job(strategy, fraction, seed, tuple(targets) if is_joint(strategy) else (task,))


def train_model(
    study: Study,
    out: str | Path,
    task: str | None = None,
    strategy: str | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    study_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train one model and write its model directory to ``out`` (the first process only).

    Args:
        study: the study whose data and settings the model is trained with.
        out: the model directory.
        task: the target (default: the first).
        strategy: the strategy (default: the study's recommendation, read from ``study_dir``).
        fraction: the share of the target's training rows (1: all).
        seed: the run's seed (its validation carve, initialization and batch order).
        study_dir: the study folder (default ``runs/<name>``): the recommendation, the
            tuned values and the in-study pretraining are taken from it when it has them.

    Returns:
        The metadata written to ``model.json``.
    """
    meta, outcomes = train_and_describe(study, task, strategy, fraction, seed, study_dir)
    if not dist.is_initialized() or dist.get_rank() == 0:
        model = outcomes[meta["targets"][0]].model
        save_model_dir(Path(out), model, meta)
        reference, memory = kept_rows(study, meta, model)
        save_reference(Path(out), reference)
        memory.save(Path(out))
    return meta


def kept_rows(study: Study, meta: dict[str, Any], model: torch.nn.Module) -> tuple[dict[str, np.ndarray], Memory]:
    """What the model directory keeps of the run's data, per task of the model: the features
    of a seeded sample of training rows a drift check compares new inputs with
    (:mod:`polytask.lifecycle.drift`), and the rows later updates rehearse and are judged
    on (:mod:`polytask.lifecycle.memory`: a training sample and the validation rows)."""
    # Texts are tokenized by the backbone the strategy starts from (a named pretrained one).
    source = transfer_source(study.config, meta["strategy"]) if uses_transfer_source(meta["strategy"]) else None
    reference, memory = {}, Memory({}, {})
    for n in meta["heads"]:
        fraction = meta["fraction"] if n in meta["targets"] else 1.0
        prepared = study.prepare(n, meta["seed"], fraction, False, source)
        train = prepared.train
        rows = torch.as_tensor(sample_rows(len(train), meta["seed"]))
        reference[n] = features(model, train.x[rows], meta["tasks"][n]["input"]["kind"])
        kept = torch.as_tensor(sample(len(train), meta["seed"], REHEARSAL_ROWS))
        memory.train[n] = Rows(train.x[kept], train.y[kept])
        val = prepared.val
        memory.gate[n] = Rows(val.x[torch.arange(len(val))], val.y)
    return reference, memory


def train_and_describe(
    study: Study, task: str | None, strategy: str | None, fraction: float, seed: int, study_dir: str | Path | None
) -> tuple[dict[str, Any], dict[str, RunOutcome]]:
    """Train as :func:`train_model` does; ``model.json`` and the run's outcomes (the model in memory)."""
    folder = Path(study_dir) if study_dir is not None else Path("runs") / study.config.name
    task = task or study.config.targets[0]
    if task not in study.config.targets:
        raise ConfigError(f"--task '{task}' is not a target of the study (targets: {', '.join(study.config.targets)})")
    reason = None
    if strategy is None:
        if not 0 < fraction <= 1:
            raise ConfigError(f"--fraction must be in (0, 1], got {fraction}")
        strategy, reason = recommended(study, folder, task, fraction)
    job = pick_job(study, task, strategy, fraction, seed)
    study.load()
    ours = (folder / STUDY_FILE).is_file() and json.loads((folder / STUDY_FILE).read_text()).get("fingerprint") == study.fingerprint
    with tempfile.TemporaryDirectory(prefix="polytask-train-") as work:  # searches and pretraining of no study folder
        where = folder if ours else Path(work)
        config, tuned = study.tuned_config(where, job)
        outcomes = study.train_job(where, job, config=config)
    return describe(study, job, outcomes, tuned, reason), outcomes


def backbone_recipe(study: Study, strategy: str, shape: tuple) -> tuple[str | None, dict[str, Any]]:
    """The backbone name and options that rebuild a model's shared layers (None: the
    user's own module, which no name rebuilds)."""
    cfg = study.config
    source = transfer_source(cfg, strategy) if uses_transfer_source(strategy) else None
    user = study.backbone is not None and not isinstance(study.backbone, str)
    name = source or (None if user else study.backbone if isinstance(study.backbone, str) else cfg.model.backbone)
    if name is None:
        return None, {}
    if name.startswith("run:"):
        return saved_recipe(name.partition(":")[2])
    return name, study.backbone_options_for(name, shape)


def describe(study: Study, job: Job, outcomes: dict[str, RunOutcome], tuned: dict[str, Any] | None = None, reason: str | None = None) -> dict[str, Any]:
    """``model.json``: what the model is, how to rebuild and feed it, how it was trained
    and how well it did."""
    raw, tasks = study.load()
    cfg = study.config
    first = outcomes[job.tasks[0]]
    model = first.model
    heads = list(model.heads.keys())
    shape = study.input_shape(job.tasks[0])
    name, options = backbone_recipe(study, job.strategy, shape)
    hard = type(model) is MultiTaskModel
    records = {}
    for n in heads:
        spec = cfg.tasks[n].data
        transform = first.transforms[n].with_source(
            columns=raw[n].columns,
            crop=getattr(spec, "crop", 0) or 0,
            tokenizer={"backbone": name, "options": options} if first.transforms[n].kind == "text" else None,
            decode_size=getattr(spec, "size", None) if getattr(spec, "images", None) is not None else None,
        )
        records[n] = {
            **task_record(first.run_tasks.get(n, tasks[n]), raw[n].class_names),
            "role": "target" if n in cfg.targets else "source",
            "input": transform.to_record(),
        }
    return {
        "strategy": job.strategy,
        "recommendation": reason,
        "fraction": job.fraction,
        "seed": job.seed,
        "targets": list(job.tasks),
        "heads": heads,
        "tasks": records,
        "build": {
            "architecture": "hard" if hard else cfg.model.architecture,
            "architecture_options": {} if hard else cfg.model.architecture_options(),
            "backbone": name,
            "backbone_options": options,
            "features": hard and isinstance(model.backbone, FeatureBackbone),
            "input_shape": list(shape),
        },
        "settings": {"train": config_of(tuned, cfg), **({"tuned": tuned} if tuned else {})},
        "metrics": {n: {"val": o.val, "test": o.test} for n, o in outcomes.items()},
        "fingerprint": study.fingerprint,
        "versions": {**versions(), "device": device_name(resolve_device(cfg.train.device))},
        "processes": dist.get_world_size() if dist.is_initialized() else 1,
    }


def config_of(tuned: dict[str, Any] | None, cfg) -> dict[str, Any]:
    """The training settings the model was trained with (the study's, with tuned values)."""
    return {**cfg.train.model_dump(mode="json"), **{k: v for k, v in (tuned or {}).items() if k in cfg.train.model_dump()}}


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

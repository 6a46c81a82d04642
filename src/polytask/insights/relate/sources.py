"""The candidate sources :func:`polytask.insights.relate.rank_sources` scores for a target.

Pretrained backbones come from the study's transfer strategies
(:func:`pretrained_candidates`); each of the study's other tasks becomes a source through
a model trained quickly on it alone (:func:`_source_model`, cached under
``<out>/relate/sources/``). The rules for both are in :mod:`polytask.insights.relate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polytask.data.prepare import PreparedTask
from polytask.insights.relate.scores import _subsample
from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.strategies import transfer_source, uses_transfer_source
from polytask.study.runner import Study
from polytask.training.engine import fit


@dataclass
class Candidate:
    """One source for a target: a pretrained backbone or another task of the study.

    Attributes:
        name: the source as strategies name it (``sources:`` alias or backbone name), or the task's name.
        kind: ``pretrained`` or ``task``.
        backbone: the backbone its features come from.
        strategies: ``{strategy base: strategy}`` of the study's runs that start from it.
    """

    name: str
    kind: str
    backbone: str
    strategies: dict[str, str] = field(default_factory=dict)


def pretrained_candidates(study: Study) -> list[Candidate]:
    """The pretrained backbones the study's transfer strategies start from, in strategy order."""
    cfg = study.config
    out: dict[str, Candidate] = {}
    for strategy in cfg.strategies:
        base, _, arg = strategy.partition(":")
        if not uses_transfer_source(strategy):
            continue
        backbone = transfer_source(cfg, strategy)
        if backbone is None:
            continue  # layers pretrained inside the study: not one source
        name = arg or backbone
        cand = out.setdefault(name, Candidate(name, "pretrained", backbone))
        cand.strategies.setdefault(base, strategy)
    return list(out.values())


def _input_shape(study: Study, task: str) -> tuple:
    """The plain input shape the study's runs of ``task`` build backbones for; as in those
    runs, ``study.new_backbone`` adds the embeddings of a table's code columns for it (so
    two tasks of one shape have the same ones, which the study checks when it loads)."""
    return study.input_shape(task)


def _source_model(study: Study, name: str, out: Path, epochs: int, source_samples: int, seed: int) -> tuple[MultiTaskModel, dict[str, Any], tuple]:
    """The study's backbone and a head trained on task ``name`` alone (cached in ``out``),
    what its training did, and the input shape it reads."""
    cfg = study.config
    data = study.prepare(name, seed, 1.0)
    # Cap the rows so a large source (MNIST's 48,000) trains in seconds; validation, read
    # every epoch only to pick the best one, gets a quarter as many.
    val = _subsample(data.val, max(2, source_samples // 4), seed)
    data = PreparedTask(data.task, _subsample(data.train, source_samples, seed), val, data.test)
    shape = _input_shape(study, name)
    torch.manual_seed(seed)
    model = MultiTaskModel(study.new_backbone(shape), [data.task])
    key = {"fingerprint": study.fingerprint, "epochs": epochs, "source_samples": source_samples, "seed": seed}
    path = out / "relate" / "sources" / f"{name}.pt"
    cached = torch.load(path, weights_only=True) if path.exists() else None
    if cached is not None and cached.get("key") == key:
        model.load_state_dict(cached["state"])
        return model, cached["info"], shape
    train = cfg.train.model_copy(update={"max_epochs": min(cfg.train.max_epochs, epochs)})
    result = fit(model, {name: data}, train, seed, select=name)
    info = {"epochs": result.epochs, "best_val": result.best_val[name], "metric": data.task.metric, "seconds": result.seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "state": model.state_dict(), "info": info}, tmp)
    tmp.replace(path)
    return model, info, shape

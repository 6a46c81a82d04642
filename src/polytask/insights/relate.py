"""Rank candidate sources for each target task before training, and check the ranking afterwards.

``polytask relate CONFIG`` scores, in seconds, how well each candidate source should
transfer to each target task of a study (:mod:`polytask.methods.transferability`), and
``finalize`` later measures how well that ranking agreed with the study's results.

Candidates for a target ``T``:

- **pretrained backbones**: every backbone a transfer strategy of the study starts from
  (``fine-tune:<s>``, ``feature-extraction:<s>``, resolved through ``sources:``; plain
  ``fine-tune`` when ``model.backbone`` has pretrained weights). Their features of T's
  training inputs, frozen, give LogME and H-score. They have no source classifier, so
  LEEP and NCE are not defined for them: those scores are ``null``.
- **the study's other tasks** ``S`` (any role): a model with the study's backbone trained
  quickly on ``S`` alone (the engine's ``fit`` with the study's training rules, at most
  ``epochs`` epochs, ``source_samples`` training rows and a quarter as many validation
  rows, seed ``seed``; cached under ``<out>/relate/sources/``, so a second ranking with
  the same config and options trains nothing). Its backbone's features of T's inputs give LogME and
  H-score, its softmax over S's classes LEEP, its argmax predictions (source labels) NCE.
  A regression source has no classes: LEEP and NCE are ``null``. A source whose inputs
  have another shape than T's cannot read them and is left out (listed under ``skipped``).

Every score is computed on T's training split of seed ``seed`` at ``fraction``
(:meth:`Study.prepare`, the rows a run of that seed trains on), at most ``max_samples``
rows drawn with ``seed``. A regression target has only LogME (on its standardized
targets). Candidates are ranked by the primary ``score`` (higher is better for all;
rank 1 is the best; a candidate without that score gets no rank).

``relate.json`` (written to the output folder, with the heatmap ``relate.png``)::

    {
      "study": str, "fingerprint": str,        # the config the ranking was made for
      "score": "logme",                        # primary score, the one ranks follow
      "scores": ["logme", "leep", "nce", "h-score"],
      "fraction": 1.0, "max_samples": 1000, "epochs": 5, "source_samples": 5000, "seed": 0,
      "seconds": float,                        # wall time of the whole ranking
      "targets": {
        "<target>": {
          "kind": "classification", "n": int,  # rows scored
          "candidates": [                      # best first
            {"name": str,                      # source alias / backbone name, or task name
             "kind": "pretrained" | "task",
             "backbone": str,                  # the backbone its features come from
             "strategies": {"fine-tune": "fine-tune:<s>", ...},  # runs that start from it
             "scores": {"logme": float, "leep": float | null, ...},
             "rank": int | null,
             "seconds": float,                 # features and scores for this target
             "source": {"epochs": int, "best_val": float, "metric": str, "seconds": float}  # task candidates: its training
            }],
          "skipped": [{"name": str, "reason": str}]
        }
      }
    }

Agreement (:func:`agreement`): for each target and fraction of a finished study, Kendall's
tau-b between the candidates' primary scores and the measured mean test metric of the
strategies that start from them (pretrained ``s`` is compared with ``fine-tune:s``). The
study's own pretraining mixes every other task, so a task candidate matches plain
``fine-tune`` / ``feature-extraction`` only when it is the target's one other task; else
task candidates are skipped. Measured means are signed by the metric's direction
(:func:`polytask.core.tasks.higher_is_better`) so that tau = 1 always means "the ranking was
right". With fewer than 2 matched candidates tau is NaN (``null`` in JSON); ``n`` says how
many were matched.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.io import write_atomic
from polytask.core.tasks import Task, higher_is_better
from polytask.data.arrays import TEXT_SHAPE, is_text
from polytask.data.prepare import PreparedTask, Split
from polytask.insights.relate_figure import relate_heatmap
from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.methods.transferability import SCORES, kendall_tau, score_names
from polytask.strategies import transfer_source, uses_transfer_source
from polytask.study.runner import Study
from polytask.training.engine import fit

# What each registered score reads from a candidate: its features of the target inputs,
# its softmax over the source classes, or its hard predictions (source labels).
SCORE_INPUTS = {"logme": "features", "h-score": "features", "leep": "probs", "nce": "labels"}
# The strategies whose measured results a pretrained candidate's score is compared with.
COMPARED = ("fine-tune", "feature-extraction")
FEATURE_BATCH = 256


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


def _check(score: str, fraction: float, max_samples: int, epochs: int, source_samples: int) -> None:
    if score not in score_names():
        raise ConfigError(f"unknown score '{score}' (known: {', '.join(score_names())})")
    missing = [s for s in score_names() if s not in SCORE_INPUTS]
    if missing:
        raise ConfigError(f"score(s) {missing} are registered but relate does not know which model outputs they read")
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    if max_samples < 2 or source_samples < 2:
        raise ConfigError(f"max_samples and source_samples must be at least 2, got {max_samples} and {source_samples}")
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")


def _subsample(split: Split, n: int, seed: int) -> Split:
    """At most ``n`` rows of ``split``, drawn without replacement with ``seed`` (order kept)."""
    if len(split) <= n:
        return split
    idx = np.sort(np.random.default_rng(seed).choice(len(split), size=n, replace=False))
    idx_t = torch.as_tensor(idx)
    return Split(split.x[idx_t], split.y[idx_t])


def _labelled(task: Task, split: Split) -> Split:
    mask = task.labelled_rows(split.y)
    return split if bool(mask.all()) else Split(split.x[mask], split.y[mask])


@torch.no_grad()
def _outputs(backbone: nn.Module, x: torch.Tensor, head: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Frozen features of ``x`` and, with a head, its outputs (eval mode, batched)."""
    backbone.eval()
    feats = torch.cat([backbone(b) for b in x.split(FEATURE_BATCH)])
    return feats, (head.eval()(feats) if head is not None else None)


def _source_probs(task: Task, out: torch.Tensor) -> torch.Tensor | None:
    """Softmax over the source task's classes (binary: ``[1 - p, p]``); None for regression."""
    if task.kind == "classification":
        return torch.softmax(out.double(), dim=1)
    if task.kind == "binary":
        p = torch.sigmoid(out.double().reshape(-1))
        return torch.stack([1 - p, p], dim=1)
    return None


def _scores(target: Task, y: torch.Tensor, features: torch.Tensor, probs: torch.Tensor | None) -> dict[str, float | None]:
    """Every registered score of one candidate on one target (None where undefined)."""
    classes = target.kind != "regression"
    labels = y.reshape(-1).long().numpy() if classes else None
    inputs = {"features": features.double().numpy(), "probs": probs.numpy() if probs is not None else None}
    inputs["labels"] = probs.argmax(dim=1).numpy() if probs is not None else None
    out: dict[str, float | None] = {}
    for name in score_names():
        what = SCORE_INPUTS[name]
        if name == "logme" and not classes:
            value = SCORES[name](inputs["features"], y.double().numpy(), regression=True)
        elif not classes or inputs[what] is None:
            value = None  # needs classes: a regression target, or a candidate without a classifier
        else:
            value = SCORES[name](inputs[what], labels)
        out[name] = value if value is None or math.isfinite(value) else None
    return out


def _input_shape(study: Study, task: str, prepared: PreparedTask) -> tuple:
    raw, _ = study.load()
    return TEXT_SHAPE if is_text(raw[task].x_train) else tuple(prepared.train.x.shape[1:])


def _source_model(study: Study, name: str, out: Path, epochs: int, source_samples: int, seed: int) -> tuple[MultiTaskModel, dict[str, Any], tuple]:
    """The study's backbone and a head trained on task ``name`` alone (cached in ``out``),
    what its training did, and the input shape it reads."""
    cfg = study.config
    data = study.prepare(name, seed, 1.0)
    # Cap the rows so a large source (MNIST's 48,000) trains in seconds; validation, read
    # every epoch only to pick the best one, gets a quarter as many.
    val = _subsample(data.val, max(2, source_samples // 4), seed)
    data = PreparedTask(data.task, _subsample(data.train, source_samples, seed), val, data.test)
    shape = _input_shape(study, name, data)
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


def _rank(candidates: list[dict[str, Any]], score: str) -> list[dict[str, Any]]:
    """Set ``rank`` (1 = highest ``score``; ties share the better rank) and sort best first."""
    values = [c["scores"][score] for c in candidates]
    for c, v in zip(candidates, values):
        c["rank"] = None if v is None else 1 + sum(1 for w in values if w is not None and w > v)
    return sorted(candidates, key=lambda c: (c["rank"] is None, c["rank"] or 0, c["name"]))


def rank_sources(
    study: Study,
    out: str | Path,
    score: str = "logme",
    fraction: float = 1.0,
    max_samples: int = 1000,
    epochs: int = 5,
    source_samples: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """Score every candidate source for every target task; write ``relate.json`` and ``relate.png``.

    Args:
        study: the study whose targets, strategies and tasks define the candidates.
        out: output folder (a study folder, so ``finalize`` finds ``relate.json``).
        score: primary score, the one candidates are ranked by (a name in ``SCORES``).
        fraction: training fraction whose rows are scored.
        max_samples: most target rows scored (drawn with ``seed``).
        epochs: most epochs a source task's model trains.
        source_samples: most training rows a source task's model uses (validation: a quarter).
        seed: the split, subsample and source-training seed.

    Returns:
        The content of ``relate.json`` (schema in this module's docstring).

    Raises:
        ConfigError: unknown score, out-of-range option, or bad data or backbone.
    """
    _check(score, fraction, max_samples, epochs, source_samples)
    start = time.perf_counter()
    out = Path(out)
    _, tasks = study.load()
    cfg = study.config
    pretrained = pretrained_candidates(study)
    backbones: dict[tuple[str, tuple], nn.Module] = {}
    sources: dict[str, tuple[MultiTaskModel, dict[str, Any], tuple]] = {}
    own_backbone = study.backbone if isinstance(study.backbone, str) else cfg.model.backbone if study.backbone is None else "the study's module"
    result: dict[str, Any] = {
        "study": cfg.name,
        "fingerprint": study.fingerprint,
        "score": score,
        "scores": score_names(),
        "fraction": fraction,
        "max_samples": max_samples,
        "epochs": epochs,
        "source_samples": source_samples,
        "seed": seed,
        "targets": {},
    }
    for target in cfg.targets:
        task = tasks[target]
        rows: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        for cand in pretrained:
            t0 = time.perf_counter()
            data = study.prepare(target, seed, fraction, source=cand.backbone)
            split = _subsample(_labelled(task, data.train), max_samples, seed)
            shape = _input_shape(study, target, data)
            if (cand.backbone, shape) not in backbones:
                backbones[(cand.backbone, shape)] = study.new_backbone(shape, pretrained=True, name=cand.backbone)
            feats, _ = _outputs(backbones[(cand.backbone, shape)], split.x)
            rows.append(
                {
                    "name": cand.name,
                    "kind": cand.kind,
                    "backbone": cand.backbone,
                    "strategies": cand.strategies,
                    "scores": _scores(task, split.y, feats, None),
                    "seconds": time.perf_counter() - t0,
                }
            )
        data = study.prepare(target, seed, fraction)
        split = _subsample(_labelled(task, data.train), max_samples, seed)
        shape = _input_shape(study, target, data)
        others = [n for n in cfg.tasks if n != target]
        # In-study pretraining uses every task but the target: with one other task, plain
        # fine-tune / feature-extraction start from exactly that task's layers.
        in_study = {b: b for b in ("fine-tune", "feature-extraction") if b in cfg.strategies and transfer_source(cfg, b) is None} if len(others) == 1 else {}
        for name in cfg.tasks:
            if name == target:
                continue
            if name not in sources:
                sources[name] = _source_model(study, name, out, epochs, source_samples, seed)
            model, info, src_shape = sources[name]
            if src_shape != shape:
                skipped.append({"name": name, "reason": f"inputs of shape {src_shape}, the target's are {shape}"})
                continue
            t0 = time.perf_counter()
            feats, logits = _outputs(model.backbone, split.x, model.heads[name])
            rows.append(
                {
                    "name": name,
                    "kind": "task",
                    "backbone": own_backbone,
                    "strategies": dict(in_study),
                    "scores": _scores(task, split.y, feats, _source_probs(tasks[name], logits)),
                    "seconds": time.perf_counter() - t0,
                    "source": info,
                }
            )
        result["targets"][target] = {"kind": task.kind, "n": len(split), "candidates": _rank(rows, score), "skipped": skipped}
    result["seconds"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "relate.json", json.dumps(result, indent=2))
    write_atomic(out / "relate.png", relate_heatmap(result, encode=False))
    return result


def load_relate(folder: str | Path) -> dict[str, Any] | None:
    """``relate.json`` of a folder, or None when there is none.

    Raises:
        ConfigError: when the file is not the JSON ``polytask relate`` writes.
    """
    path = Path(folder) / "relate.json"
    if not path.exists():
        return None
    try:
        relate = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); rerun 'polytask relate'") from None
    if not isinstance(relate, dict) or not isinstance(relate.get("targets"), dict) or relate.get("score") not in relate.get("scores", []):
        raise ConfigError(f"{path}: not a relate.json written by 'polytask relate' (needs 'score', 'scores' and 'targets')")
    return relate


def agreement(relate: dict[str, Any], summary: dict[str, Any], strategy: str = "fine-tune") -> list[dict[str, Any]]:
    """Kendall tau between the ranking before training and the measured results.

    Args:
        relate: the content of ``relate.json``.
        summary: a study summary (:func:`polytask.insights.analysis.summarize`): its ``cells``.
        strategy: the strategy base whose measured mean each pretrained candidate is matched with.

    Returns:
        Per target (in ``relate`` order) and fraction with a matched cell: ``{"target",
        "fraction", "strategy", "metric", "tau", "n", "matched": [{"name", "strategy",
        "score", "measured"}]}``; ``tau`` is NaN when fewer than 2 candidates matched.
    """
    score = relate["score"]
    out = []
    for target, entry in relate["targets"].items():
        cells = {(c["strategy"], c["fraction"]): c for c in summary.get("cells", []) if c["task"] == target}
        for fraction in sorted({f for _, f in cells}):
            matched = []
            metric = None
            for cand in entry["candidates"]:
                name = cand.get("strategies", {}).get(strategy)
                cell = cells.get((name, fraction)) if name else None
                if cell is None or cand["scores"].get(score) is None:
                    continue
                metric = cell["metric"]
                matched.append({"name": cand["name"], "strategy": name, "score": cand["scores"][score], "measured": cell["mean"]})
            if not any(cand.get("strategies", {}).get(strategy) for cand in entry["candidates"]):
                continue  # no candidate of this target is a start of this strategy
            sign = 1.0 if metric is None or higher_is_better(metric) else -1.0
            tau = kendall_tau([m["score"] for m in matched], [sign * m["measured"] for m in matched])
            out.append({"target": target, "fraction": fraction, "strategy": strategy, "metric": metric, "tau": tau, "n": len(matched), "matched": matched})
    return out


def relate_summary(relate: dict[str, Any], summary: dict[str, Any], fingerprint: str | None = None) -> dict[str, Any]:
    """The ``summary["relate"]`` section: agreement with fine-tuning and feature extraction, JSON-safe.

    ``current`` is False when ``relate.json`` was made for another config (``fingerprint``).
    """
    rows = [r for strategy in COMPARED for r in agreement(relate, summary, strategy)]
    for r in rows:
        r["tau"] = None if math.isnan(r["tau"]) else r["tau"]
    return {
        "score": relate["score"],
        "file": "relate.json",
        "current": fingerprint is None or relate.get("fingerprint") == fingerprint,
        "agreement": rows,
    }


def relate_table(relate: dict[str, Any]):
    """A rich table of the ranking: per target, candidates best first with every score."""
    from rich.table import Table

    scores = relate["scores"]
    t = Table(title=f"transferability before training (ranked by {relate['score']}; higher is better; seed {relate['seed']}, fraction {relate['fraction']:g})")
    for col in ("target", "rank", "candidate", "kind", *scores):
        t.add_column(col, justify="right" if col in ("rank", *scores) else "left")
    for target, entry in relate["targets"].items():
        for i, c in enumerate(entry["candidates"]):
            values = ["–" if c["scores"].get(s) is None else f"{c['scores'][s]:.4g}" for s in scores]
            t.add_row(target if i == 0 else "", "–" if c["rank"] is None else str(c["rank"]), c["name"], c["kind"], *values)
    skipped = [f"{target}: {s['name']} ({s['reason']})" for target, entry in relate["targets"].items() for s in entry.get("skipped", [])]
    if skipped:
        t.caption = "skipped: " + "; ".join(skipped)
    return t

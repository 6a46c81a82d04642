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

Agreement with the measured results: :mod:`polytask.insights.relate.agreement`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.io import write_atomic
from polytask.insights.relate.agreement import COMPARED, agreement, load_relate, relate_summary
from polytask.insights.relate.figure import relate_heatmap
from polytask.insights.relate.scores import FEATURE_BATCH, SCORE_INPUTS, _labelled, _outputs, _rank, _scores, _source_probs, _subsample
from polytask.insights.relate.sources import Candidate, _input_shape, _source_model, pretrained_candidates
from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.methods.transferability import score_names
from polytask.strategies import transfer_source
from polytask.study.runner import Study

# Scores, candidates and the agreement with measured results live in the scores, sources and
# agreement modules of this package; these names stay importable from here.


__all__ = [
    "COMPARED",
    "FEATURE_BATCH",
    "SCORE_INPUTS",
    "Candidate",
    "agreement",
    "load_relate",
    "pretrained_candidates",
    "rank_sources",
    "relate_summary",
    "relate_table",
]


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
            shape = _input_shape(study, target)
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
        shape = _input_shape(study, target)
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

"""Transferability scores of one candidate source on one target task's rows.

The pieces :func:`polytask.insights.relate.rank_sources` scores with: the rows scored (a
labelled subsample of a split), a candidate's frozen features and source-class outputs on
them, every registered score (:mod:`polytask.methods.transferability`) computed from those,
and the ranking of a target's candidates by the primary score.

Attributes:
    SCORE_INPUTS: ``{score: what it reads}``: ``features``, ``probs`` or ``labels``.
    FEATURE_BATCH: rows per forward pass when computing features.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask.core.targets import labelled_rows
from polytask.core.tasks import Task
from polytask.data.prepare import Split
from polytask.methods.transferability import SCORES, score_names

# What each registered score reads from a candidate: its features of the target inputs,
# its softmax over the source classes, or its hard predictions (source labels).
SCORE_INPUTS = {"logme": "features", "h-score": "features", "leep": "probs", "nce": "labels"}
FEATURE_BATCH = 256


def _subsample(split: Split, n: int, seed: int) -> Split:
    """At most ``n`` rows of ``split``, drawn without replacement with ``seed`` (order kept)."""
    if len(split) <= n:
        return split
    idx = np.sort(np.random.default_rng(seed).choice(len(split), size=n, replace=False))
    idx_t = torch.as_tensor(idx)
    return Split(split.x[idx_t], split.y[idx_t])


def _labelled(task: Task, split: Split) -> Split:
    mask = labelled_rows(task, split.y)
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


def _rank(candidates: list[dict[str, Any]], score: str) -> list[dict[str, Any]]:
    """Set ``rank`` (1 = highest ``score``; ties share the better rank) and sort best first."""
    values = [c["scores"][score] for c in candidates]
    for c, v in zip(candidates, values):
        c["rank"] = None if v is None else 1 + sum(1 for w in values if w is not None and w > v)
    return sorted(candidates, key=lambda c: (c["rank"] is None, c["rank"] or 0, c["name"]))

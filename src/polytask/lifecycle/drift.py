"""Is a model being applied to data unlike what it learned from?

A model directory keeps a reference sample per task (``reference.safetensors``): up to
:data:`REFERENCE_ROWS` of the training rows (seeded draw), as the features the check
compares. For a table or numeric columns these are the model's inputs (the columns after
the saved encoding and scaling); for images and text, the backbone's embeddings of them
(what the heads read), since single pixels or token ids say little about drift.

New inputs are compared feature by feature with the two-sample Kolmogorov-Smirnov test
(:func:`scipy.stats.ks_2samp`), the p-values adjusted for the number of features with
Benjamini-Hochberg (:func:`statsmodels.stats.multitest.multipletests`), and the population
stability index (PSI over the reference's deciles; 0.1-0.25 is commonly read as a
moderate shift, above 0.25 as a large one). The answer names the features that moved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from scipy.stats import ks_2samp
from statsmodels.stats.multitest import multipletests
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.io import write_atomic
from polytask.data.preprocess import InputTransform

REFERENCE, REFERENCE_ROWS = "reference.safetensors", 1000
ALPHA, PSI_LARGE = 0.05, 0.25
BATCH = 256


def uses_embeddings(kind: str) -> bool:
    """Whether drift is checked on the backbone's embeddings (images, text) rather than the inputs."""
    return kind in ("image", "text")


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, kind: str) -> np.ndarray:
    """The features drift is checked on for model inputs ``x`` (see the module docstring)."""
    if not uses_embeddings(kind):
        return x.detach().float().cpu().numpy().reshape(len(x), -1)
    backbone = getattr(model, "backbone", None)
    if backbone is None:  # soft-sharing architectures: no single representation; the inputs then
        return x.detach().float().cpu().numpy().reshape(len(x), -1)
    was = model.training
    model.eval()
    out = [backbone(b).float().cpu() for b in x.split(BATCH)]
    model.train(was)
    return torch.cat(out).numpy()


def feature_names(transform: InputTransform, width: int) -> list[str]:
    """Names of the ``width`` features of inputs prepared by ``transform``: a table's
    columns as encoded (``city=rome``, ``age missing``), else column names or numbers."""
    enc = transform.encoder
    if uses_embeddings(transform.kind):
        return [f"embedding {i}" for i in range(width)]
    if enc is not None:
        lay = enc.layout
        names = list(lay.numeric)
        for c in lay.onehot:
            names += [f"{c.name}=(unknown)", *(f"{c.name}={v}" for v in c.levels)]
        names += [f"{n} missing" for n in lay.indicators] + [c.name for c in lay.coded]
        if transform.columns and not lay.onehot and not lay.coded and all(n.isdigit() for n in lay.numeric):
            names[: len(lay.numeric)] = list(transform.columns)
        if len(names) == width:
            return names
    if transform.columns and len(transform.columns) == width:
        return list(transform.columns)
    return [str(i) for i in range(width)]


def sample_rows(n: int, seed: int, rows: int = REFERENCE_ROWS) -> np.ndarray:
    """Which of ``n`` training rows the reference keeps (seeded, sorted)."""
    return np.sort(np.random.default_rng(seed).choice(n, min(n, rows), replace=False))


def save_reference(folder: Path, samples: dict[str, np.ndarray]) -> None:
    """Write the reference sample of every task to ``folder`` atomically."""
    tensors = {task: torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32)) for task, a in samples.items()}
    write_atomic(Path(folder) / REFERENCE, save_safetensors(tensors))


def read_reference(folder: Path) -> dict[str, np.ndarray]:
    path = Path(folder) / REFERENCE
    if not path.is_file():
        raise ConfigError(f"{folder}: no {REFERENCE} to check drift against (train the model again with this version)")
    return {k: v.numpy() for k, v in load_safetensors(path.read_bytes()).items()}


def psi(reference: np.ndarray, new: np.ndarray, bins: int = 10) -> float:
    """Population stability index of one feature over the reference's quantile bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if np.allclose(new, edges[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    ref = np.histogram(reference, edges)[0] / len(reference)
    cur = np.histogram(new, edges)[0] / len(new)
    ref, cur = np.clip(ref, 1e-4, None), np.clip(cur, 1e-4, None)  # empty bins: the usual floor
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def check(reference: np.ndarray, new: np.ndarray, names: list[str] | None = None) -> dict[str, Any]:
    """Per feature KS test (BH-adjusted) and PSI of ``new`` rows against ``reference`` rows.

    Returns:
        ``features`` (per feature: name, ks, p, p_adjusted, psi), ``drifted`` (names of
        features with an adjusted p below :data:`ALPHA`), ``rows`` and ``reference_rows``.
    """
    if new.shape[1] != reference.shape[1]:
        raise ConfigError(f"drift: the new inputs give {new.shape[1]} features, the reference {reference.shape[1]}")
    names = names or [str(i) for i in range(reference.shape[1])]
    tests = [ks_2samp(reference[:, j], new[:, j]) for j in range(reference.shape[1])]
    p = np.array([t.pvalue for t in tests])
    adjusted = multipletests(p, alpha=ALPHA, method="fdr_bh")[1] if len(p) else p
    rows = [
        {"feature": n, "ks": float(t.statistic), "p": float(pv), "p_adjusted": float(pa), "psi": psi(reference[:, j], new[:, j])}
        for j, (n, t, pv, pa) in enumerate(zip(names, tests, p, adjusted))
    ]
    drifted = [r["feature"] for r in rows if r["p_adjusted"] < ALPHA]
    return {"features": rows, "drifted": drifted, "rows": int(len(new)), "reference_rows": int(len(reference))}


def summary_line(task: str, result: dict[str, Any], embeddings: bool) -> str:
    """One plain sentence about ``result`` of :func:`check`."""
    what = "embedding dimensions" if embeddings else "input features"
    n = len(result["features"])
    if not result["drifted"]:
        return (
            f"{task}: no drift found: none of {n} {what} of {result['rows']} new rows differs from the "
            f"{result['reference_rows']} training rows kept (KS, Benjamini-Hochberg at {ALPHA}); absence of evidence is not proof of sameness"
        )
    top = sorted((r for r in result["features"] if r["feature"] in result["drifted"]), key=lambda r: -r["ks"])[:5]
    shown = ", ".join(f"{r['feature']} (KS {r['ks']:.2f}, PSI {r['psi']:.2f})" for r in top)
    large = sum(r["psi"] > PSI_LARGE for r in result["features"])
    return (
        f"{task}: DRIFT: {len(result['drifted'])} of {n} {what} of the new rows differ from the training rows "
        f"(KS, Benjamini-Hochberg at {ALPHA}; {large} with PSI > {PSI_LARGE}): {shown}; the model is being applied to data unlike what it learned from"
    )

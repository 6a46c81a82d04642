"""Matplotlib figures for the report, returned as base64 PNG so the HTML is self-contained."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _err(cell: dict[str, Any]) -> float:
    return (cell["ci95"][1] - cell["mean"]) if cell.get("ci95") else 0.0


def metric_by_strategy(cells: list[dict[str, Any]], task: str, strategies: list[str], fractions: list[float]) -> str:
    """Grouped bars: the task's test metric per strategy at each fraction, with 95% CIs."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(fractions) * max(1, len(strategies)) / 3, 3.4))
    width = 0.8 / max(1, len(strategies))
    metric = ""
    for i, strategy in enumerate(strategies):
        xs, ys, es = [], [], []
        for j, f in enumerate(fractions):
            c = next((c for c in cells if c["task"] == task and c["strategy"] == strategy and c["fraction"] == f), None)
            if c:
                metric = c["metric"]
                xs.append(j + (i - (len(strategies) - 1) / 2) * width)
                ys.append(c["mean"])
                es.append(_err(c))
        ax.bar(xs, ys, width, yerr=es, capsize=3, label=strategy)
    ax.set_xticks(range(len(fractions)), [f"{f:g}" for f in fractions])
    ax.set_xlabel("fraction of target training data")
    ax.set_ylabel(metric)
    ax.set_title(f"{task}: test {metric} (mean, 95% CI)")
    lo = min((c["mean"] - _err(c) for c in cells if c["task"] == task), default=0)
    hi = max((c["mean"] + _err(c) for c in cells if c["task"] == task), default=1)
    pad = 0.1 * (hi - lo or 1)
    ax.set_ylim(max(0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def data_efficiency(cells: list[dict[str, Any]], task: str, strategies: list[str]) -> str:
    """Curves: the task's test metric against the training fraction, one line per strategy."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    metric = ""
    for strategy in strategies:
        cs = sorted((c for c in cells if c["task"] == task and c["strategy"] == strategy), key=lambda c: c["fraction"])
        if not cs:
            continue
        metric = cs[0]["metric"]
        x = [c["fraction"] for c in cs]
        y = [c["mean"] for c in cs]
        ax.plot(x, y, marker="o", label=strategy)
        lo = [c["ci95"][0] if c.get("ci95") else c["mean"] for c in cs]
        hi = [c["ci95"][1] if c.get("ci95") else c["mean"] for c in cs]
        ax.fill_between(x, lo, hi, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of target training data (log)")
    ax.set_ylabel(metric)
    ax.set_title(f"{task}: data efficiency")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)

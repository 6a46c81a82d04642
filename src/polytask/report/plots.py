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
    _legend_outside(ax)
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
    fractions = sorted({c["fraction"] for c in cells if c["task"] == task})
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("fraction of target training data (log)")
    ax.set_ylabel(metric)
    ax.set_title(f"{task}: data efficiency")
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    return _png(fig)


def _legend_outside(ax) -> None:
    """The legend right of the axes, so it never covers data however many strategies there are."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)


def paired_differences(cells: list[dict[str, Any]], task: str, diffs: dict[tuple[str, float], list[float]]) -> str | None:
    """Per cell of ``task`` with a reference: every seed's paired difference to the reference
    (dots; positive = better), the difference's 95% interval (a bar), and the equivalence
    margin (a band around 0). A reader sees at once when every seed falls on one side."""
    shown = [c for c in cells if c["task"] == task and c.get("delta_vs_reference") is not None]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.38 * len(shown)))
    margin = max((c.get("margin") or 0.0) for c in shown)
    if margin:
        ax.axvspan(-margin, margin, color="#1a5e8a", alpha=0.12, label=f"equivalence margin ±{margin:.3g}")
    ax.axvline(0.0, color="#444", linewidth=0.8)
    for y, c in enumerate(shown):
        seeds = diffs.get((c["strategy"], c["fraction"]), [])
        ax.scatter(seeds, [y] * len(seeds), s=14, color="#b3261e" if c["verdict"] == "worse" else "#11772d" if c["verdict"] == "better" else "#555", zorder=3)
        if c.get("delta_ci95"):
            ax.plot(c["delta_ci95"], [y, y], color="#222", linewidth=2.2, zorder=2)
    ax.set_yticks(range(len(shown)), [f"{c['strategy']} @ {c['fraction']:g} ({c['verdict']})" for c in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"paired difference in {shown[0]['metric']} per seed (positive = better than the reference)")
    ax.set_title(f"{task}: each seed against its reference (scratch, or source-only), 95% interval")
    if margin:
        _legend_outside(ax)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)

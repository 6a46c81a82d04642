"""The figure of a ``polytask relate`` ranking (``relate.png``, and the report's heatmap)."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def relate_heatmap(relate: dict[str, Any], encode: bool = True) -> str | bytes:
    """Heatmap of a ``polytask relate`` ranking: targets x candidates, colored by rank.

    Each cell shows the primary score and the candidate's rank for that target (1 = most
    promising, darkest green); scores of different targets are on different scales, ranks are
    not. Grey: not a candidate for that target, or the score is undefined for it.

    Returns:
        base64 PNG text (for the HTML report), or the PNG bytes with ``encode=False``.
    """
    score = relate["score"]
    targets = list(relate["targets"])
    names = list(dict.fromkeys(c["name"] for t in targets for c in relate["targets"][t]["candidates"]))
    ranks = np.full((len(targets), max(1, len(names))), np.nan)
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * max(1, len(names)), 1.2 + 0.55 * len(targets)))
    worst = 1
    for i, t in enumerate(targets):
        for c in relate["targets"][t]["candidates"]:
            j = names.index(c["name"])
            value = c["scores"].get(score)
            if c["rank"] is not None:
                ranks[i, j] = c["rank"]
                worst = max(worst, c["rank"])
            text = "–" if value is None else f"{value:.3g}\n#{c['rank']}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    cmap = matplotlib.colormaps["YlGn_r"].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(ranks), cmap=cmap, vmin=1, vmax=max(2, worst), aspect="auto", alpha=0.6)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(targets)), targets)
    ax.set_xlabel("candidate source")
    ax.set_ylabel("target task")
    ax.set_title(f"transferability before training: {score} (#rank, 1 = best)")
    fig.colorbar(im, ax=ax, label="rank")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode() if encode else buf.getvalue()

"""How well a ``polytask relate`` ranking agreed with a finished study's measured results.

Agreement (:func:`agreement`): for each target and fraction of a finished study, Kendall's
tau-b between the candidates' primary scores and the measured mean test metric of the
strategies that start from them (pretrained ``s`` is compared with ``fine-tune:s``). The
study's own pretraining mixes every other task, so a task candidate matches plain
``fine-tune`` / ``feature-extraction`` only when it is the target's one other task; else
task candidates are skipped. Measured means are signed by the metric's direction
(:func:`polytask.core.tasks.higher_is_better`) so that tau = 1 always means "the ranking was
right". With fewer than 2 matched candidates tau is NaN (``null`` in JSON); ``n`` says how
many were matched.

Attributes:
    COMPARED: the strategy bases whose measured results the ranking is compared with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from polytask.core.errors import ConfigError
from polytask.core.tasks import higher_is_better
from polytask.methods.transferability import kendall_tau

# The strategies whose measured results a pretrained candidate's score is compared with.
COMPARED = ("fine-tune", "feature-extraction")


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

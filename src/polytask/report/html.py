"""The self-contained HTML report (Jinja2 template, plots embedded as PNG)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from polytask._version import __version__
from polytask.core.tasks import higher_is_better
from polytask.insights.relate.figure import relate_heatmap
from polytask.report import plots


def render_report(summary: dict[str, Any], rows: list[dict[str, Any]] | None = None, relate: dict[str, Any] | None = None) -> str:
    """HTML text of the report for a study summary.

    ``relate``: a ``polytask relate`` ranking (``relate.json``), shown as a heatmap next to
    ``summary["relate"]``, its agreement with the measured results.
    """
    env = Environment(loader=PackageLoader("polytask", "report"), autoescape=select_autoescape(["html", "j2"]))
    several = len(summary["fractions"]) >= 2  # a curve of one point says nothing
    figures = [
        {
            "task": task,
            "bars": plots.metric_by_strategy(summary["cells"], task, summary["strategies"], summary["fractions"]),
            "curve": plots.data_efficiency(summary["cells"], task, summary["strategies"]) if several else None,
            "paired": plots.paired_differences(summary["cells"], task, paired_differences(summary["cells"], rows or [], task)),
        }
        for task in summary["tasks"]
    ]
    heatmap = relate_heatmap(relate) if relate and relate.get("targets") else None
    return env.get_template("template.html.j2").render(s=summary, plots=figures, version=__version__, relate=relate, relate_heatmap=heatmap)


def paired_differences(cells: list[dict[str, Any]], rows: list[dict[str, Any]], task: str) -> dict[tuple[str, float], list[float]]:
    """Per (strategy, fraction) of ``task``, each seed's test metric minus its reference's on
    the same seed, signed so that positive is better (the latest finished row of each run)."""
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        latest[r["run_id"]] = r
    test = {(r["strategy"], r["fraction"], r["seed"]): r["test"] for r in latest.values() if r.get("task") == task and r.get("status") == "ok"}
    out: dict[tuple[str, float], list[float]] = {}
    for c in cells:
        if c["task"] != task or c.get("delta_vs_reference") is None:
            continue
        sign = 1.0 if higher_is_better(c["metric"]) else -1.0
        out[(c["strategy"], c["fraction"])] = [
            sign * (v - test[(c["reference"], f, seed)])
            for (s, f, seed), v in sorted(test.items())
            if s == c["strategy"] and f == c["fraction"] and (c["reference"], f, seed) in test
        ]
    return out

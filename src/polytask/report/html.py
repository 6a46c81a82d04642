"""The self-contained HTML report (Jinja2 template, plots embedded as PNG)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from polytask._version import __version__
from polytask.insights.relate.figure import relate_heatmap
from polytask.report import plots


def render_report(summary: dict[str, Any], rows: list[dict[str, Any]] | None = None, relate: dict[str, Any] | None = None) -> str:
    """HTML text of the report for a study summary.

    ``relate``: a ``polytask relate`` ranking (``relate.json``), shown as a heatmap next to
    ``summary["relate"]``, its agreement with the measured results.
    """
    env = Environment(loader=PackageLoader("polytask", "report"), autoescape=select_autoescape(["html", "j2"]))
    figures = [
        {
            "task": task,
            "bars": plots.metric_by_strategy(summary["cells"], task, summary["strategies"], summary["fractions"]),
            "curve": plots.data_efficiency(summary["cells"], task, summary["strategies"]),
        }
        for task in summary["tasks"]
    ]
    heatmap = relate_heatmap(relate) if relate and relate.get("targets") else None
    return env.get_template("template.html.j2").render(s=summary, plots=figures, version=__version__, relate=relate, relate_heatmap=heatmap)

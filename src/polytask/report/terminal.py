"""Terminal tables (rich) for the end of a study."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

STYLE = {"better": "bold green", "worse": "bold red", "same": "dim", "baseline": "cyan", "inconclusive": "dim"}


def verdict_table(summary: dict[str, Any]) -> Table:
    """Per task, fraction and strategy: mean with 95% CI, delta vs its reference, p, verdict.

    The reference is scratch, except for domain adaptation (source-only).
    """
    t = Table(title=f"study {summary['study']}: test metric over {max((c['n'] for c in summary['cells']), default=0)} seeds")
    for col in ("task", "fraction", "strategy", "mean ± 95% CI", "Δ", "vs", "p", "verdict"):
        t.add_column(col, justify="left" if col in ("task", "strategy", "verdict") else "right")
    for c in summary["cells"]:
        half = f" ± {c['ci95'][1] - c['mean']:.4f}" if c["ci95"] else ""
        d = c.get("delta_vs_reference", c.get("delta_vs_scratch"))
        delta = "" if d is None else f"{d:+.4f}"
        ref = "" if c["verdict"] == "baseline" else c.get("reference", "scratch")
        p = "" if c["p_value"] is None else f"{c['p_value']:.3g}"
        t.add_row(c["task"], f"{c['fraction']:g}", c["strategy"], f"{c['mean']:.4f}{half}", delta, ref, p, f"[{STYLE[c['verdict']]}]{c['verdict']}[/]")
    return t


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """Print the verdict table and the recommendations."""
    console = console or Console()
    console.print(verdict_table(summary))
    for r in summary["recommendations"]:
        console.print(f"[bold]{r['task']} @ {r['fraction']:g}[/]: use [bold]{r['best']}[/] — {r['reason']}")
    for w in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}")
    if summary["failed"]:
        console.print(f"[red]{len(summary['failed'])} run(s) failed[/]; see results.jsonl")

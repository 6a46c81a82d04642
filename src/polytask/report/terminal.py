"""Terminal tables (rich) for the end of a study."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

STYLE = {"better": "bold green", "worse": "bold red", "equivalent": "cyan", "baseline": "blue", "inconclusive": "dim"}


def _ci(bounds: list[float] | None, signed: bool = False) -> str:
    if not bounds:
        return ""
    fmt = "{:+.4f}" if signed else "{:.4f}"
    return f"[{fmt.format(bounds[0])}, {fmt.format(bounds[1])}]"


def verdict_table(summary: dict[str, Any]) -> Table:
    """Per task, fraction and strategy: mean with its 95% CI, labels used, the difference to
    the reference with its 95% CI, the p-value behind the verdict, and the verdict.

    The reference is scratch, except for domain adaptation methods (source-only).
    """
    seeds = max((c["n"] for c in summary["cells"]), default=0)
    correction = ", p Holm-adjusted over the table, intervals per comparison" if summary.get("correction") == "holm" else ""
    t = Table(title=f"study {summary['study']}: test metric over {seeds} seeds (Δ vs scratch unless noted{correction})")
    for col in ("task", "fraction", "strategy", "mean [95% CI]", "labels", "Δ [95% CI]", "p", "verdict"):
        t.add_column(col, justify="left" if col in ("task", "strategy", "verdict") else "right")
    for c in summary["cells"]:
        d = c.get("delta_vs_reference")
        delta = "" if d is None else f"{d:+.4f} {_ci(c.get('delta_ci95'), signed=True)}"
        if d is not None and c["reference"] != "scratch":
            delta += f" vs {c['reference']}"
        p = c.get("p_equivalence") if c["verdict"] == "equivalent" else c.get("p_value")
        verdict = c["verdict"] + (f" ±{c['margin']:.3g}" if c["verdict"] == "equivalent" else "")
        labels = "" if c.get("labels_used") is None else f"{c['labels_used']:.0f}"
        t.add_row(
            c["task"],
            f"{c['fraction']:g}",
            c["strategy"],
            f"{c['mean']:.4f} {_ci(c.get('ci95'))}",
            labels,
            delta,
            "" if p is None else f"{p:.2g}",
            f"[{STYLE[c['verdict']]}]{verdict}[/]",
        )
    return t


# Columns the verdict table needs; output that is not a terminal (a log file) gets them.
WIDTH = 150


def _console(console: Console | None) -> Console:
    console = console or Console()
    if not console.is_terminal and console.width < WIDTH:
        console.width = WIDTH
    return console


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """Print the verdict table, the recommendations and the study-level answer."""
    console = _console(console)
    console.print(verdict_table(summary))
    for r in summary["recommendations"]:
        sure = "" if r.get("confidence") == "clear" else " [dim](inconclusive)[/]"
        console.print(f"[bold]{r['task']} @ {r['fraction']:g}[/]: use [bold]{r['best']}[/]{sure} — {escape(r['reason'])}")
    for a in summary.get("study_answer", []):
        mark = "[bold green]recommended[/]" if a["recommended"] else "[dim]not recommended[/]"
        console.print(f"[bold]all targets @ {a['fraction']:g}[/]: {mark} — {escape(a['answer'])}")
    for w in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(w)}")
    if summary["failed"]:
        console.print(f"[red]{len(summary['failed'])} run(s) failed[/]; see results.jsonl")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _span(bounds: list[float]) -> str:
    return _duration(bounds[0]) if _duration(bounds[0]) == _duration(bounds[1]) else f"{_duration(bounds[0])} to {_duration(bounds[1])}"


def print_plan(plan: dict[str, Any], console: Console | None = None) -> None:
    """Print what ``compare --dry-run`` found: the pending runs and the time they would take."""
    console = _console(console)
    low, high = plan["epochs"]
    t = Table(title=f"study {plan['study']}: {plan['planned'] - plan['done']} of {plan['planned']} runs to do in {plan['out']} ({plan['done']} finished, kept)")
    for col in ("strategy", "fraction", "models", "runs", "s per epoch", f"time ({low} to {high} epochs each)"):
        t.add_column(col, justify="left" if col == "strategy" else "right")
    for r in plan["pending"]:
        t.add_row(r["strategy"], f"{r['fraction']:g}", str(r["jobs"]), str(r["runs"]), f"{r['epoch_seconds']:.2f}", _span(r["seconds"]))
    if plan["pretrainings"]:
        t.add_row("pretraining", "", str(plan["pretrainings"]), "", "", _span(plan["pretrain_seconds"]))
    if plan["searches"]:
        t.add_row(f"tuning ({plan['trials']} trials each)", "", str(plan["searches"]), "", "", _span(plan["tune_seconds"]))
    console.print(t)
    workers = plan["workers"]
    wall = f"; with {workers} workers about {_span(plan['wall_seconds'])} of wall time" if workers > 1 else ""
    console.print(
        f"estimated compute: {_span(plan['total_seconds'])}{wall} (from a {plan['probe_seconds']:.0f} s probe: one epoch of every strategy "
        f"and fraction; a run stops between {low} and {high} epochs). Nothing was written."
    )

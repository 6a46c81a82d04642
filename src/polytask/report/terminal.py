"""Terminal tables (rich) for the end of a study."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

STYLE = {"better": "bold green", "worse": "bold red", "equivalent": "cyan", "baseline": "blue", "inconclusive": "dim"}


# Columns the verdict table needs; output that is not a terminal (a log file) gets them.
WIDTH = 150
# Narrower terminals get one compact table per task and fraction (intervals on a line of
# their own), which fits in 80 columns.
WIDE = 130
FORMATS = ("table", "csv", "markdown", "json")
# The columns of the csv and json summaries, one row per cell.
COLUMNS = (
    "task",
    "fraction",
    "strategy",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "labels",
    "reference",
    "delta",
    "delta_low",
    "delta_high",
    "p",
    "verdict",
    "margin",
)


def _console(console: Console | None) -> Console:
    console = console or Console()
    if not console.is_terminal and console.width < WIDTH:
        console.width = WIDTH
    return console


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One plain row per cell (:data:`COLUMNS`; None where a value does not apply)."""
    out = []
    for c in summary["cells"]:
        ci, dci = c.get("ci95") or (None, None), c.get("delta_ci95") or (None, None)
        d = c.get("delta_vs_reference")
        out.append(
            {
                "task": c["task"],
                "fraction": c["fraction"],
                "strategy": c["strategy"],
                "n": c["n"],
                "mean": c["mean"],
                "ci_low": ci[0],
                "ci_high": ci[1],
                "labels": c.get("labels_used"),
                "reference": c["reference"] if d is not None else None,
                "delta": d,
                "delta_low": dci[0],
                "delta_high": dci[1],
                "p": c.get("p_equivalence") if c["verdict"] == "equivalent" else c.get("p_value"),
                "verdict": c["verdict"],
                "margin": c.get("margin") if c["verdict"] == "equivalent" else None,
            }
        )
    return out


def _texts(r: dict[str, Any]) -> dict[str, str]:
    """A row's cells as the tables print them."""
    ci = f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if r["ci_low"] is not None else ""
    delta = dci = ""
    if r["delta"] is not None:
        delta = f"{r['delta']:+.4f}" + (f" vs {r['reference']}" if r["reference"] != "scratch" else "")
        dci = f"[{r['delta_low']:+.4f}, {r['delta_high']:+.4f}]" if r["delta_low"] is not None else ""
    return {
        "mean": f"{r['mean']:.4f}",
        "ci": ci,
        "labels": "" if r["labels"] is None else f"{r['labels']:.0f}",
        "delta": delta,
        "dci": dci,
        "p": "" if r["p"] is None else f"{r['p']:.2g}",
        "verdict": r["verdict"],
        "margin": "" if r["margin"] is None else f"±{r['margin']:.3g}",
    }


def _title(summary: dict[str, Any]) -> str:
    seeds = max((c["n"] for c in summary["cells"]), default=0)
    correction = ", p Holm-adjusted over the table, intervals per comparison" if summary.get("correction") == "holm" else ""
    return f"study {summary['study']}: test metric over {seeds} seeds (Δ vs scratch unless noted{correction})"


def verdict_table(summary: dict[str, Any]) -> Table:
    """Per task, fraction and strategy: mean with its 95% CI, labels used, the difference to
    the reference with its 95% CI, the p-value behind the verdict, and the verdict.

    The reference is scratch, except for domain adaptation methods (source-only).
    """
    t = Table(title=_title(summary))
    for col in ("task", "fraction", "strategy", "mean [95% CI]", "labels", "Δ [95% CI]", "p", "verdict"):
        t.add_column(col, justify="left" if col in ("task", "strategy", "verdict") else "right")
    for r in summary_rows(summary):
        x = _texts(r)
        verdict = f"{x['verdict']} {x['margin']}".strip()
        t.add_row(
            r["task"],
            f"{r['fraction']:g}",
            r["strategy"],
            f"{x['mean']} {x['ci']}".strip(),
            x["labels"],
            f"{x['delta']} {x['dci']}".strip(),
            x["p"],
            f"[{STYLE[r['verdict']]}]{verdict}[/]",
        )
    return t


def compact_tables(summary: dict[str, Any]) -> list[Table]:
    """The verdict table for a narrow terminal: one table per task and fraction, each
    interval on the line under its value, no box: fits in 80 columns."""
    tables: dict[tuple, Table] = {}
    for r in summary_rows(summary):
        key = (r["task"], r["fraction"])
        if key not in tables:
            t = Table(title=f"{r['task']} @ {r['fraction']:g}", box=box.SIMPLE_HEAD, padding=(0, 1), title_justify="left")
            # Numbers and intervals never wrap; a long strategy name folds onto more lines.
            t.add_column("strategy", overflow="fold")
            t.add_column("mean [95% CI]", justify="right", no_wrap=True, min_width=16)
            t.add_column("Δ [95% CI]", justify="right", no_wrap=True, min_width=18)
            t.add_column("p", justify="right", no_wrap=True)
            t.add_column("verdict", no_wrap=True)
            tables[key] = t
        x = _texts(r)
        style = STYLE[r["verdict"]]
        delta = x["delta"].replace(" vs ", "\nvs ")  # a reference other than scratch: its own line
        tables[key].add_row(r["strategy"], f"{x['mean']}\n{x['ci']}", f"{delta}\n{x['dci']}", x["p"], f"[{style}]{x['verdict']}[/]\n{x['margin']}")
    return list(tables.values())


def format_summary(summary: dict[str, Any], fmt: str) -> str:
    """The verdicts as ``csv`` (a row per cell, :data:`COLUMNS`), ``markdown`` (a table and
    the recommendations) or ``json`` (the rows, the recommendations, the study-level
    answer and the failed runs' count)."""
    rows = summary_rows(summary)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
        return buf.getvalue()
    if fmt == "json":
        keep = {"recommendations": summary["recommendations"], "study_answer": summary.get("study_answer", []), "failed": len(summary["failed"])}
        return json.dumps({"study": summary["study"], "cells": rows, **keep}, indent=2) + "\n"
    if fmt == "markdown":
        lines = [
            f"**{_title(summary)}**",
            "",
            "| task | fraction | strategy | mean [95% CI] | labels | Δ [95% CI] | p | verdict |",
            "|---|---:|---|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            x = _texts(r)
            cells = [
                r["task"],
                f"{r['fraction']:g}",
                r["strategy"],
                f"{x['mean']} {x['ci']}",
                x["labels"],
                f"{x['delta']} {x['dci']}",
                x["p"],
                f"{x['verdict']} {x['margin']}",
            ]
            lines.append("| " + " | ".join(c.strip().replace("|", "\\|") for c in cells) + " |")
        lines.append("")
        lines += [f"- **{r['task']} @ {r['fraction']:g}**: use **{r['best']}** — {r['reason']}" for r in summary["recommendations"]]
        lines += [
            f"- **all targets @ {a['fraction']:g}**: {'recommended' if a['recommended'] else 'not recommended'} — {a['answer']}"
            for a in summary.get("study_answer", [])
        ]
        return "\n".join(lines) + "\n"
    raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")


def print_summary(summary: dict[str, Any], console: Console | None = None, fmt: str = "table") -> None:
    """Print the verdict table, the recommendations and the study-level answer; or, with
    ``fmt`` ``csv``, ``markdown`` or ``json``, the text :func:`format_summary` gives."""
    console = _console(console)
    if fmt != "table":
        console.file.write(format_summary(summary, fmt))
        return
    if console.width >= WIDE:
        console.print(verdict_table(summary))
    else:
        console.print(_title(summary))
        for t in compact_tables(summary):
            console.print(t)
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

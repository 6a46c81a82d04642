"""The end-of-study summary: readable in 80 columns, and as csv, markdown or json."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console
from test_cli import runner

from polytask.cli import SUMMARY_FORMATS, app
from polytask.report.terminal import COLUMNS, FORMATS, format_summary, print_summary, summary_rows

STRATEGIES = ["scratch", "fine-tune", "feature-extraction", "mtl:pcgrad", "mtl:uncertainty", "domain-adapt:dann", "fine-tune:hf:sentence-transformers/x", "mtl"]


def _summary() -> dict:
    cells = []
    for task in ("digits", "fashion-mnist-large-name"):
        for fraction in (0.05, 1.0):
            for i, s in enumerate(STRATEGIES):
                verdict = ["baseline", "better", "worse", "equivalent", "inconclusive"][i % 5]
                ref = None if s == "scratch" else ("source-only" if s.startswith("domain") else "scratch")
                cells.append(
                    {
                        "task": task,
                        "fraction": fraction,
                        "strategy": s,
                        "n": 5,
                        "mean": 0.81234 + i / 100,
                        "ci95": [0.80111, 0.82345],
                        "labels_used": 1234.0,
                        "reference": ref or "scratch",
                        "delta_vs_reference": None if ref is None else -0.01234 * i,
                        "delta_ci95": None if ref is None else [-0.0234, 0.0123],
                        "p_value": None if ref is None else 0.0123,
                        "p_equivalence": 0.004,
                        "margin": 0.01,
                        "verdict": verdict,
                    }
                )
    recs = [{"task": "digits", "fraction": 1.0, "best": "fine-tune", "confidence": "clear", "reason": "better than scratch by 0.03"}]
    return {"study": "wide", "cells": cells, "recommendations": recs, "study_answer": [], "warnings": [], "failed": [], "correction": "holm"}


def test_in_80_columns_no_line_is_wider_and_no_cell_wraps():
    buf = io.StringIO()
    print_summary(_summary(), Console(file=buf, width=80, force_terminal=True, color_system=None))
    lines = buf.getvalue().splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    text = buf.getvalue()
    # Numbers and intervals whole on their line; a long strategy name folds, never cut short.
    assert "…" not in text
    for s in ("scratch", "fine-tune", "mtl:pcgrad"):
        assert s in text
    assert "0.8123" in text and "[0.8011, 0.8235]" in text and "[-0.0234, +0.0123]" in text
    assert "fine-tune: use" not in text and "digits @ 1: use fine-tune" in text


def test_a_wide_terminal_gets_one_table_with_a_row_per_cell():
    buf = io.StringIO()
    print_summary(_summary(), Console(file=buf, width=200, force_terminal=True, color_system=None))
    rows = [line for line in buf.getvalue().splitlines() if "fashion-mnist-large-name" in line]
    assert len(rows) == 2 * len(STRATEGIES)


def test_csv_json_and_markdown_hold_every_cell():
    summary = _summary()
    parsed = list(csv.DictReader(io.StringIO(format_summary(summary, "csv"))))
    assert len(parsed) == len(summary["cells"]) and tuple(parsed[0]) == COLUMNS
    assert float(parsed[1]["delta"]) == pytest.approx(-0.01234) and parsed[0]["delta"] == ""
    data = json.loads(format_summary(summary, "json"))
    assert data["cells"] == summary_rows(summary) and data["recommendations"][0]["best"] == "fine-tune"
    md = format_summary(summary, "markdown").splitlines()
    table = [line for line in md if line.startswith("|")]
    assert len(table) == len(summary["cells"]) + 2 and all(line.count("|") == 9 for line in table)
    assert "- **digits @ 1**: use **fine-tune**" in md[-1]
    assert FORMATS == SUMMARY_FORMATS


def test_report_prints_the_chosen_format_and_refuses_another(tmp_path):
    from test_cli import write_study

    config = write_study(tmp_path / "input", seeds=1, fractions=[1.0], strategies=["scratch", "fine-tune"])
    out = tmp_path / "out"
    assert runner.invoke(app, ["compare", str(config), "--out", str(out), "--format", "json"]).exit_code == 0
    result = runner.invoke(app, ["report", str(out), "--format", "csv"])
    assert result.exit_code == 0
    assert [r["strategy"] for r in csv.DictReader(io.StringIO(result.stdout))] == ["scratch", "fine-tune"]
    bad = runner.invoke(app, ["report", str(out), "--format", "xml"])
    assert bad.exit_code == 2 and "--format must be one of table, csv, markdown, json, got 'xml'" in bad.stderr

"""A study folder's answer: the analysis of its rows, written as ``summary.json`` and
``report.html`` (after a study runs, and again with ``polytask report``)."""

from __future__ import annotations

import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from polytask.config import validate
from polytask.core.errors import ConfigError, PolytaskWarning
from polytask.core.io import write_atomic
from polytask.insights.analysis import summarize
from polytask.insights.relate import load_relate, relate_summary
from polytask.lifecycle.serving import study_serving
from polytask.report.html import render_report
from polytask.study.runner import Study
from polytask.study.store import ResultStore, load_predictions, study_record
from polytask.study.tune import load_tunings


def finalize(out: str | Path) -> dict[str, Any]:
    """Analyse the rows in a study folder and (re)write ``summary.json`` and ``report.html``.

    With a ``relate.json`` in the folder (``polytask relate``), the summary gains
    ``relate``: how well that ranking before training agreed with the measured results
    (:func:`polytask.insights.relate.relate_summary`), and the report its heatmap and table.
    """
    out = Path(out)
    cfg_path = out / "config.yaml"
    if not (out / "results.jsonl").exists() or not cfg_path.exists():
        raise ConfigError(f"'{out}' is not a study folder: expected config.yaml and results.jsonl in it")
    try:
        raw = yaml.safe_load(cfg_path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{cfg_path}: not valid YAML ({getattr(e, 'problem', e)}); expected the config polytask wrote there") from None
    config = validate(raw, source=str(cfg_path))
    record = study_record(out)
    fingerprint = record["fingerprint"]
    rows = [r for r in ResultStore(out / "results.jsonl").rows() if r.get("fingerprint") == fingerprint]
    summary = summarize(rows, config, lookup=lambda row: load_predictions(out, row), tuning=load_tunings(out, fingerprint))
    summary["warnings"] = [*record.get("notes", []), *summary["warnings"]]
    serving = read_serving(out, fingerprint)
    for row in summary.get("cost", []):
        row.update(serving.get(row["strategy"], {}))
    relate = load_relate(out)
    if relate is not None:
        summary["relate"] = relate_summary(relate, summary, fingerprint)
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    write_atomic(out / "report.html", render_report(summary, rows, relate=relate))
    return summary


SERVING_FILE = "serving.json"


def measure_serving(study: Study, out: str | Path) -> None:
    """Measure what serving every target costs per strategy (:func:`polytask.lifecycle.serving.study_serving`)
    into ``serving.json``, once per fingerprint and machine: the cost table reads it."""
    path = Path(out) / SERVING_FILE
    where = {"fingerprint": study.fingerprint, "machine": machine()}
    try:
        kept = json.loads(path.read_text())
        if {k: kept.get(k) for k in where} == where:
            return
    except (OSError, ValueError):
        pass
    try:
        figures = study_serving(study)
    except Exception as e:  # the study's answer does not wait on a measurement of its cost
        warnings.warn(f"serving was not measured ({type(e).__name__}: {e}); the cost table shows parameters alone", PolytaskWarning, stacklevel=2)
        return
    write_atomic(path, json.dumps({**where, "strategies": figures}, indent=2))


def read_serving(out: Path, fingerprint: str) -> dict[str, dict[str, float]]:
    """The serving figures measured for this fingerprint, per strategy (none when not measured)."""
    try:
        kept = json.loads((Path(out) / SERVING_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return kept.get("strategies", {}) if kept.get("fingerprint") == fingerprint else {}


def machine() -> dict[str, str]:
    """Where serving was measured: the figures are this machine's."""
    return {"cpu": platform.processor() or platform.machine(), "cores": str(os.cpu_count()), "torch": torch.__version__}

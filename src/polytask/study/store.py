"""What a study folder stores: ``results.jsonl`` (one line per finished run, appended as
it finishes), ``study.json`` and each run's test predictions.

Each line is written with a single ``write`` on a file opened for appending and then
fsynced, so a crash leaves at worst a torn last line, which readers skip and the next
append starts after. Whole files (summary, report) are written to a temporary file and
renamed over the old one.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from polytask.core.errors import ConfigError, storage_error
from polytask.core.io import write_atomic
from polytask.study.plan import RunSpec
from polytask.training.engine import Predictions


class ResultStore:
    """Append-only JSON-lines file of run records."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def rows(self) -> list[dict[str, Any]]:
        """Every complete record in file order; a torn or corrupt line is skipped."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                out.append(row)
        return out

    def append(self, row: dict[str, Any]) -> None:
        """Add one record durably (:class:`~polytask.core.errors.StorageError` when the file
        cannot be written; the lines already there are untouched)."""
        line = json.dumps(row, sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                # A crash mid-write can leave a line without its newline; start on a fresh line.
                if f.tell() > 0:
                    with open(self.path, "rb") as r:
                        r.seek(-1, os.SEEK_END)
                        if r.read(1) != b"\n":
                            line = "\n" + line
                f.write(line.encode())
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise storage_error(self.path, e) from None


# The study folder's record of what its results depend on (fingerprint and its parts).
STUDY_FILE = "study.json"


def predictions_path(out: Path, spec: RunSpec, fingerprint: str) -> Path:
    """Where a cell's test predictions are kept:
    ``predictions/<fingerprint>/<task>/<strategy>/<fraction>/seed<k>.npz``. Under the
    fingerprint, so that a study run with other settings in the same folder never replaces
    the predictions of rows that are still reused."""
    return Path(out) / "predictions" / fingerprint / spec.task / spec.strategy / f"{spec.fraction:g}" / f"seed{spec.seed}.npz"


def saved_model_path(out: Path, spec: RunSpec) -> Path:
    """Where ``save_models`` keeps a cell's trained backbone:
    ``models/<task>/<strategy>/<fraction>/seed<k>.pt`` (what ``run:`` reads)."""
    return Path(out) / "models" / spec.task / spec.strategy / f"{spec.fraction:g}" / f"seed{spec.seed}.pt"


def load_predictions(out: Path, row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """A row's test labels and predictions, or None when they were not kept (or are unreadable)."""
    path = predictions_path(out, RunSpec(row["task"], row["strategy"], row["fraction"], row["seed"]), row.get("fingerprint", ""))
    try:
        with np.load(path, allow_pickle=False) as saved:
            return saved["truth"], saved["pred"].astype(np.float64)
    except (OSError, KeyError, ValueError):
        return None


def save_predictions(out: Path, spec: RunSpec, fingerprint: str, predictions: Predictions) -> None:
    """Write a cell's per-row test labels and predictions atomically (read by the analysis)."""
    buf = io.BytesIO()
    np.savez(buf, truth=predictions.truth, pred=predictions.pred.astype(np.float32))
    write_atomic(predictions_path(out, spec, fingerprint), buf.getvalue())


def study_record(out: Path) -> dict[str, Any]:
    """What ``study.json`` holds: the fingerprint a study folder was last run with, its
    parts, the versions and the notes about the input."""
    path = Path(out) / STUDY_FILE
    try:
        record = json.loads(path.read_text())
        record["fingerprint"]
        return record
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"'{out}' has no readable {STUDY_FILE}; expected the file 'polytask compare' writes there (rerun compare to recreate it)") from None

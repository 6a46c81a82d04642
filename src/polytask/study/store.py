"""The results store: ``results.jsonl``, one line per finished run, appended as it finishes.

Each line is written with a single ``write`` on a file opened for appending and then
fsynced, so a crash leaves at worst a torn last line, which readers skip and the next
append starts after. Whole files (summary, report) are written to a temporary file and
renamed over the old one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


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
        """Add one record durably."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(row, sort_keys=True) + "\n"
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

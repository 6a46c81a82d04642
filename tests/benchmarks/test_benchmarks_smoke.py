"""The engine-overhead benchmark script runs end to end and reports a ratio."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "engine_overhead.py"


def test_engine_overhead_quick_reports_a_ratio():
    # A subprocess, as `make bench` runs it: catches import-path and argument-parsing
    # breakage that importing main() in-process would hide.
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ratio")]
    assert lines, proc.stdout
    # The ratio's value depends on the machine and its load; only its form is checked.
    match = re.search(r":\s*([0-9]+(?:\.[0-9]+)?)", lines[0])
    assert match, lines[0]
    ratio = float(match.group(1))
    assert math.isfinite(ratio) and ratio > 0

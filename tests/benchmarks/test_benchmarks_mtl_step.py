"""The MTL step benchmark runs end to end (numbers are recorded in BENCHMARKS.md, not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mtl_step.py"


def test_mtl_step_quick_prints_a_ratio_per_method():
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # Method rows: a name, then (ms, ratio) per task count; --quick runs T = 2 and 3.
    rows = [line for line in out.stdout.splitlines() if re.fullmatch(r"[a-z-]+(\s+\d+\.\d+){4}", line.strip())]
    assert rows and rows[0].split()[0] == "ew"
    assert all(float(r.split()[2]) > 0 for r in rows)

"""The preparation benchmark runs end to end, checks the tensors agree, and prints ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "prepare_once.py"


def test_prepare_once_quick_prints_a_ratio_per_kind():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    ratios = re.findall(r"ratio (\d+\.\d)x", proc.stdout)
    assert len(ratios) == 2 and all(float(r) > 0 for r in ratios), proc.stdout

"""The study-scaling benchmark runs end to end (numbers are recorded in BENCHMARKS.md, not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "study_scaling.py"


def test_study_scaling_quick_times_both_executors_and_finds_the_same_results():
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "executors: local-1, local-2" in out.stdout
    medians = {m[0]: float(m[1]) for m in re.findall(r"^(local-\d)\s+median\s+(\d+\.\d+) s", out.stdout, re.M)}
    assert set(medians) == {"local-1", "local-2"} and all(t > 0 for t in medians.values())
    # The ratio depends on the machine and its load (tests share the cores); only its form is checked.
    assert re.search(r"^speed-up local-2 / local-1: \d+\.\d\dx", out.stdout, re.M)
    assert re.search(r"^same test metrics per run id: yes \((\d+) of \1 runs ok, 2 studies compared\)", out.stdout, re.M)

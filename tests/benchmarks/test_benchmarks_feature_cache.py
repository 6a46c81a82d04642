"""The feature-cache benchmark runs end to end (numbers are recorded in BENCHMARKS.md, not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "feature_cache.py"


def test_feature_cache_quick_prints_both_timings_a_ratio_and_equal_heads():
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    seconds = {m[0]: float(m[1]) for m in re.findall(r"^(cached features|frozen backbone):\s+(\d+\.\d+) s", out.stdout, re.M)}
    assert set(seconds) == {"cached features", "frozen backbone"} and all(t > 0 for t in seconds.values())
    assert re.search(r"speed ratio \(frozen / cached seconds\): \d+\.\dx", out.stdout)
    # Same features, seed and batches: both heads score alike and end with (nearly) the same weights.
    val = re.search(r"val accuracy: cached (\d\.\d+), frozen (\d\.\d+)", out.stdout)
    assert val and val[1] == val[2]
    assert "differ by more than float noise" not in out.stdout

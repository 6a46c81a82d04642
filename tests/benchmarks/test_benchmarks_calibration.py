"""The verdict calibration benchmark runs end to end (its figures are in BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "verdict_calibration.py"
sys.path.insert(0, str(SCRIPT.parent))

from verdict_calibration import _clopper_pearson, _judge  # noqa: E402


def test_quick_run_prints_the_table_and_the_a_a_rate():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "|true effect| / margin" in proc.stdout and "A/A control:" in proc.stdout


def test_a_verdict_is_judged_against_the_truths_interval():
    assert _judge("better", 0.01, 0.03, 0.01) == "right" and _judge("better", -0.03, -0.01, 0.01) == "wrong"
    assert _judge("better", -0.01, 0.02, 0.01) == "none"  # too close to call
    assert _judge("worse", 0.0, 0.0, 0.01) == "wrong"  # the A/A control's truth is exactly 0
    assert _judge("equivalent", -0.004, 0.006, 0.01) == "right" and _judge("equivalent", 0.02, 0.05, 0.01) == "wrong"
    assert _judge("inconclusive", 0.02, 0.05, 0.01) == "none"


def test_clopper_pearson_by_hand():
    lo, hi = _clopper_pearson(0, 20)
    assert lo == 0.0 and abs(hi - (1 - 0.025 ** (1 / 20))) < 1e-12

"""``benchmarks/serving.py --quick`` measures both ways of serving two tasks in both runtimes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "serving.py"


def test_serving_quick_prints_latency_and_throughput_of_both_ways_in_both_runtimes():
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    rows = re.findall(r"latency\s+([\d.]+) ms \(p90\s+([\d.]+)\)\s+throughput\s+(\d+) rows/s", out)
    assert len(rows) == 4 and all(float(lat) > 0 and float(p90) >= float(lat) and int(rps) > 0 for lat, p90, rps in rows)
    assert out.count("per-task models / mtl model: latency") == 2 and "onnxruntime / pytorch (mtl model)" in out
    shared, separate = (int(n.replace(",", "")) for n in re.search(r"one mtl model ([\d,]+); a model per task ([\d,]+)", out).groups())
    assert separate > shared  # two backbones against one

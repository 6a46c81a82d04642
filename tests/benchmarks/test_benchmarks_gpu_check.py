"""The GPU check runs end to end: with the CPU standing in for the accelerator here, and
saying plainly that it measured nothing when no CUDA device is present."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_gpu_check_with_the_cpu_standing_in():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--skip-demo"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"engine: [\d,]+ samples/s, bare loop: [\d,]+ samples/s, ratio \d+\.\d\d", proc.stdout), proc.stdout
    # The same seed on the same device gives the same numbers.
    assert re.search(r"pcgrad: test accuracy (\d\.\d+) on cpu \(again: \1, identical\)", proc.stdout), proc.stdout


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="checks the message on a machine without CUDA")
def test_gpu_check_without_a_gpu_measures_nothing_and_says_so():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "gpu_check: no CUDA device here; nothing measured"

"""The local executor and GPUs: workers pinned to the visible GPUs in turn, the driver never
initialising CUDA. Checked without a GPU by counting devices through a stand-in."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from polytask.study.executor import pin_gpu
from polytask.training import devices


def test_workers_take_the_gpus_in_turn(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    counter = mp.get_context("fork").Value("i", 0)
    assert [pin_gpu(counter, ["0", "1"]) for _ in range(3)] == ["0", "1", "0"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert pin_gpu(counter, []) is None


@pytest.mark.parametrize(
    ("spec", "workers", "count", "visible", "expected"),
    [
        ("auto", 2, 2, None, ["0", "1"]),
        ("cuda", 4, 2, "3,5", ["3", "5"]),
        ("cuda:1", 4, 2, None, []),  # a named GPU: every worker on it
        ("auto", 1, 2, None, []),  # one worker: nothing to spread
        ("auto", 4, 1, None, []),  # one GPU: nothing to choose
        ("cpu", 4, 2, None, []),
    ],
)
def test_which_gpus_workers_spread_over(monkeypatch, spec, workers, count, visible, expected):
    monkeypatch.setattr(devices, "cuda_count", lambda: count)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert devices.worker_gpus(spec, workers) == expected


def test_resolving_auto_does_not_initialise_cuda():
    # Forked workers can use CUDA only if the driver never initialised it.
    code = "import torch\nfrom polytask.training.devices import resolve_device\nresolve_device('auto')\nprint(torch.cuda.is_initialized())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

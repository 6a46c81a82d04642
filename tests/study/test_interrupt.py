"""Ctrl-C in a study with several workers: stop within seconds, keep every finished run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import yaml
from conftest import FAST_TRAIN

from polytask.data import make_task_family, write_npz_family
from polytask.study.store import ResultStore


def _long_study(folder):
    family = make_task_family(n_tasks=2, n_target=200, n_source=400, n_test=60, n_features=6, seed=0)
    paths = write_npz_family(family, folder)
    cfg = {
        "name": "long",
        "seeds": 10,
        "fractions": [0.25, 0.5, 1.0],
        "tasks": {n: {"data": {"npz": str(p)}, "role": "target" if n == "target" else "source"} for n, p in paths.items()},
        "model": {"backbone": "mlp", "mlp": {"hidden": [32]}},
        "strategies": ["scratch", "fine-tune"],
        "train": {**FAST_TRAIN, "max_epochs": 200, "patience": 200, "min_steps_per_epoch": 20},
    }
    path = folder / "long.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _started_study(tmp_path):
    """A long study running in a subprocess (a session of its own, so the test can end every
    process of it whatever happens), once it has stored two runs."""
    config, out = _long_study(tmp_path), tmp_path / "out"
    cmd = [sys.executable, "-m", "polytask", "compare", str(config), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"}, start_new_session=True)
    store = ResultStore(out / "results.jsonl")
    deadline = time.monotonic() + 120
    while len(store.rows()) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the study finished before it could be stopped"
    return proc, store


def _processes_left(proc) -> list[str]:
    """Processes of the study's session still alive (then killed, so none outlives the test)."""
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    return left


def _wait(proc, seconds: float, what: str) -> str:
    try:
        return proc.communicate(timeout=seconds)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"the study {what}") from None


def test_sigint_with_workers_stops_within_seconds_and_keeps_finished_runs(tmp_path):
    proc, store = _started_study(tmp_path)
    seen = len(store.rows())
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    err = _wait(proc, 15, "kept running for 15 s after Ctrl-C")
    took = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert "resume" in err and took < 15
    kept = store.rows()
    assert len(kept) >= seen and all(r["status"] == "ok" for r in kept)
    planned = 10 * 3 * 2
    assert len(kept) < planned
    assert _processes_left(proc) == []  # no worker outlives the interrupted study


def test_a_worker_killed_by_the_system_stops_the_study_with_one_line_not_a_hang(tmp_path):
    # The OOM killer (or a crash) ends one worker mid-run: its job can never report back, so
    # the study must stop with the reason, keep every finished run, and leave no process behind.
    proc, store = _started_study(tmp_path)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert workers
    os.kill(int(workers[0]), signal.SIGKILL)
    err = _wait(proc, 30, "hung after a worker was killed")
    lines = [line for line in err.splitlines() if line.strip() and "━" not in line]
    assert proc.returncode == 1 and len(lines) == 1 and "worker process" in lines[0] and "resume" in lines[0], err
    assert "Traceback" not in err
    assert all(r["status"] == "ok" for r in store.rows())
    assert _processes_left(proc) == []

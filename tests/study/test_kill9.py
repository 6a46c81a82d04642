"""A study killed with SIGKILL at any moment: no process outlives it, and restarting it
until it finishes loses no finished run, repeats none, and gives the numbers of a study
that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import yaml
from conftest import FAST_TRAIN

from polytask.data import make_task_family, write_npz_family
from polytask.study.store import ResultStore


def _config(folder):
    family = make_task_family(n_tasks=3, n_target=160, n_source=240, n_test=50, n_features=6, seed=1)
    paths = write_npz_family(family, folder)
    cfg = {
        "name": "killed",
        "seeds": 3,
        "fractions": [0.5, 1.0],
        "tasks": {n: {"data": {"npz": str(p)}, "role": "target" if n.startswith("target") else "source"} for n, p in paths.items()},
        "model": {"backbone": "mlp", "mlp": {"hidden": [16]}},
        # fine-tune pretrains in the study (a cache file per target and seed); mtl trains one
        # model for every target, so its rows arrive together.
        "strategies": ["scratch", "fine-tune", "mtl"],
        "train": {**FAST_TRAIN, "max_epochs": 6, "patience": 6},
    }
    path = folder / "killed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _compare(config, out, workers: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "polytask", "compare", str(config), "--out", str(out), "--workers", str(workers)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _session_alive(pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-s", str(pid)], capture_output=True, text=True).stdout.split()


def _numbers(out) -> dict:
    return {r["run_id"]: (r["test"], r["val"], r["epochs"]) for r in ResultStore(out / "results.jsonl").rows() if r["status"] == "ok"}


def test_a_study_killed_at_random_moments_resumes_to_the_uninterrupted_numbers(tmp_path):
    config = _config(tmp_path)
    reference = _compare(config, tmp_path / "reference", 1)
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    expected = _numbers(tmp_path / "reference")

    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    kills = 0
    for attempt in range(4):  # killed at four random moments (if it is still running)...
        proc = _compare(config, out, 2)
        try:
            proc.wait(timeout=float(rng.uniform(1.5, 6.0)))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers must follow it
            proc.wait()
            kills += 1
            deadline = time.monotonic() + 10
            while _session_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = _session_alive(proc.pid)
            if left:
                os.killpg(proc.pid, signal.SIGKILL)
            assert left == [], f"worker processes outlived the killed study (attempt {attempt})"
            continue
        assert proc.returncode == 0, proc.stderr.read()
        break
    final = _compare(config, out, 2)  # ...then left to finish
    assert final.wait(timeout=300) == 0, final.stderr.read()
    assert kills >= 2, "the study finished before it was killed twice: lengthen it"
    rows = ResultStore(out / "results.jsonl").rows()
    repeated = [run for run, n in Counter(r["run_id"] for r in rows).items() if n > 1]
    assert repeated == []  # no finished run stored twice
    assert _numbers(out) == expected
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()


def test_a_joint_job_stopped_between_its_rows_stores_each_cell_once(tmp_path):
    # One model for every target: its rows are appended one after another, and a study
    # stopped between two of them reruns the job; the cell already stored keeps its one row.
    from polytask import Study

    cfg = yaml.safe_load(_config(tmp_path).read_text())
    cfg.update(seeds=1, fractions=[1.0], strategies=["mtl"])
    for task in cfg["tasks"].values():
        task["role"] = "target"
    Study(cfg).run_grid(tmp_path / "out", progress=False)
    store = ResultStore(tmp_path / "out" / "results.jsonl")
    rows = store.rows()
    assert len(rows) == 3 and len({r["model_id"] for r in rows}) == 1  # three targets, one model
    lines = store.path.read_text().splitlines()
    store.path.write_text(lines[0] + "\n")  # stopped after the first row
    Study(cfg).run_grid(tmp_path / "out", progress=False)
    again = store.rows()
    assert sorted(r["run_id"] for r in again) == sorted(r["run_id"] for r in rows)
    assert {r["run_id"]: r["test"] for r in again} == {r["run_id"]: r["test"] for r in rows}

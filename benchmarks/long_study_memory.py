"""Memory over a long study: 200 small runs in one process, resident memory after each.

A study's process must not grow with the number of runs it has done: caches are bounded
(features), results go to disk as runs finish, and nothing of a finished run is kept.
This runs 200 runs of a small tabular study in this process (``--workers 1``: scratch and
fine-tune, 2 fractions, 50 seeds, the in-study pretrainings included) and samples the
process's resident memory as the rows arrive.

Usage::

    .venv/bin/python benchmarks/long_study_memory.py            # about 40 s
    .venv/bin/python benchmarks/long_study_memory.py --quick    # 40 runs
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import torch

from polytask.data import make_task_family
from polytask.study.runner import Study
from polytask.study.store import ResultStore


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="40 runs")
    args = p.parse_args()
    torch.set_num_threads(1)
    seeds = 10 if args.quick else 50
    family = make_task_family(n_tasks=3, n_target=120, n_source=300, n_test=100, n_features=8, seed=0)
    cfg = {
        "name": "long",
        "seeds": seeds,
        "fractions": [0.5, 1.0],
        "tasks": {n: {"role": "target" if n == "target" else "source"} for n in family},
        "model": {"backbone": "mlp", "mlp": {"hidden": [32]}},
        "strategies": ["scratch", "fine-tune"],
        "train": {"max_epochs": 20, "batch_size": 32, "patience": 20, "min_steps_per_epoch": 10},
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "study"
        store = ResultStore(out / "results.jsonl")
        samples: list[tuple[int, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                n = len(store.rows()) if store.path.exists() else 0
                samples.append((n, rss_mib()))

        thread = threading.Thread(target=sample, daemon=True)
        start = rss_mib()
        t0 = time.perf_counter()
        thread.start()
        Study(cfg, data=family).run_grid(out, progress=False)
        stop.set()
        thread.join()
        seconds = time.perf_counter() - t0
        total = len(store.rows())

    def at(m: int) -> float:
        """Resident memory once ``m`` runs had finished (the last sample before the next one)."""
        return max((r for n, r in samples if n == m), default=max((r for n, r in samples if n <= m), default=float("nan")))

    marks = sorted({1, total // 10, total // 4, total // 2, 3 * total // 4, total})
    print(f"{total} runs in {seconds:.0f} s in one process; resident memory before the study {start:.0f} MiB")
    for m in marks:
        print(f"  after {m:4d} runs: {at(m):6.0f} MiB")
    early = total // 10
    grown = at(total) - at(early)
    print(f"growth from run {early} to run {total}: {grown:+.1f} MiB ({grown / max(1, total - early) * 100:+.2f} MiB per 100 runs)")
    print(f"peak over the study: {max(r for _, r in samples):.0f} MiB")


if __name__ == "__main__":
    main()

"""Preparing a run's tensors: converting the run's rows (resize, tokenize) against taking its
rows from inputs converted once per study and task (:func:`polytask.data.prepare.model_inputs`).

Both produce the same tensors (checked here on every measured run); the ratio is what a
study saves per run. One torch thread, as each study worker uses.

Usage::

    .venv/bin/python benchmarks/prepare_once.py            # about 20 s
    .venv/bin/python benchmarks/prepare_once.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from polytask.core.tasks import infer_task
from polytask.data import TaskData
from polytask.data.prepare import model_inputs, prepare_task
from polytask.methods.backbones.text import HashTokenizer

WORDS = np.array("a fine film dull plot great cast weak ending superb acting not bad at all really the story of".split())


def images(n: int) -> TaskData:
    rng = np.random.default_rng(0)
    x = rng.random((n + n // 5, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    return TaskData(x[:n], y[:n], x[n:], y[n:])


def texts(n: int) -> TaskData:
    rng = np.random.default_rng(0)
    x = np.array([" ".join(rng.choice(WORDS, size=rng.integers(3, 40))) for _ in range(n + n // 5)], dtype=object)
    y = rng.integers(0, 2, len(x))
    return TaskData(x[:n], y[:n], x[n:], y[n:])


def measure(name: str, data: TaskData, size: int | None, encode, runs: int) -> None:
    task = infer_task("t", data.y_train)
    t0 = time.perf_counter()
    once = model_inputs(data, size, encode)
    convert_once = time.perf_counter() - t0
    seconds = {"rows": 0.0, "once": 0.0}
    for seed in range(runs):
        for how in ("rows", "once"):
            t0 = time.perf_counter()
            p = prepare_task(data, task, seed, 0.5, size, encode=encode, inputs=once if how == "once" else None)
            seconds[how] += time.perf_counter() - t0
            if how == "rows":
                ref = p
        assert all(torch.equal(getattr(ref, s).x, getattr(p, s).x) for s in ("train", "val", "test")), "different tensors"
    a, b = seconds["rows"] / runs, seconds["once"] / runs
    print(
        f"{name:<28} per run {a * 1000:8.1f} ms converting its rows, {b * 1000:8.1f} ms from inputs converted once "
        f"(once: {convert_once * 1000:.0f} ms); ratio {a / b:.1f}x"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    n, runs = (500, 2) if args.quick else (5000, 6)
    measure(f"{n} images 28 -> 64 px", images(n), 64, None, runs)
    measure(f"{n} texts, hashed words", texts(n), None, HashTokenizer(32768, 64), runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

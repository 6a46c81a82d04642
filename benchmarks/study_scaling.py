"""Study scaling: how much faster one fixed study grid runs with 2 worker processes than with 1 (and on Ray).

One small study (synthetic related tabular tasks from
:func:`polytask.data.make_task_family`, polytask's MLP backbone, strategies ``scratch``,
``fine-tune`` and ``mtl`` at two fractions over several seeds, runs of a fraction of a
second each) runs through the public API, ``polytask.Study(config, data=...).run(out=...,
workers=N, progress=False)``, once per executor, each time as a fresh ``Study`` into a fresh
output folder, all in this one process. The time is the whole ``run`` call as a user sees
it: the grid (with ``workers=2``: forking the pool, the in-study pretrainings first, then
the jobs) and the analysis and report written at the end, which are serial in both. The
``Study`` object is built outside the timer.

Every study must store the same test metric for every run id (read from its
``results.jsonl`` through :class:`polytask.study.store.ResultStore`): a run's numbers may
not depend on how many processes ran the grid. The script checks this and exits with
status 1 when they differ.

The driver runs with one torch thread (``--threads`` changes it), as each worker process
of ``workers=2`` does, so the comparison is one process against two on the same work.
After an untimed warm-up of each executor on a tiny grid, the executors alternate for
``--repeats`` timed runs each; the headline is the ratio of their medians.

With ``--ray`` (needs ``pip install 'polytask[ray]'``) the script also starts a local Ray
cluster of 2 CPUs (``ray start --head`` on 127.0.0.1, its own temporary folder, through
:class:`polytask.study.ray_cluster.LocalRayCluster`; stopped afterwards by process id, never
``ray stop``) and adds ``ray-2``: ``Study.run(..., executor="ray", address=...)``, timed the
same way (connecting to the cluster and its worker processes' start are part of each run,
as they are for ``polytask compare --executor ray``). It prints Ray's overhead per run
against ``local-2`` (the same two processes' worth of CPUs), and splits it into a fixed cost
per study and a cost per run with a second, tiny grid.

Usage::

    .venv/bin/python benchmarks/study_scaling.py            # full run, about two minutes on 2 cores
    .venv/bin/python benchmarks/study_scaling.py --ray      # also on a local Ray cluster of 2 CPUs
    .venv/bin/python benchmarks/study_scaling.py --quick    # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from polytask import Study
from polytask.data import TaskData, make_task_family
from polytask.study.store import ResultStore

STRATEGIES = ("scratch", "fine-tune", "mtl")


@dataclass(frozen=True)
class Setup:
    """One study grid: data sizes, model, training settings and how often it is timed."""

    n_tasks: int
    n_target: int
    n_source: int
    n_test: int
    n_features: int
    hidden: tuple[int, ...]
    fractions: tuple[float, ...]
    seeds: int
    epochs: int
    repeats: int
    batch_size: int = 64
    lr: float = 3e-3
    patience: int = 3
    seed: int = 0

    @property
    def runs(self) -> int:
        return len(STRATEGIES) * len(self.fractions) * self.seeds


# 36 runs of about 0.3 s each on one core (15 epochs at most over 400 target rows; mtl and
# the pretraining read 3 sources of 2,000 rows): about 12 s a study with one worker, long
# enough that forking a pool and the final report (about 1 s, serial) do not dominate.
FULL = Setup(n_tasks=4, n_target=400, n_source=2_000, n_test=500, n_features=20, hidden=(64, 64), fractions=(0.5, 1.0), seeds=6, epochs=15, repeats=3)
QUICK = Setup(n_tasks=3, n_target=60, n_source=200, n_test=100, n_features=6, hidden=(16,), fractions=(1.0,), seeds=2, epochs=3, repeats=1, patience=2)


def make_data(s: Setup) -> dict[str, TaskData]:
    """``target`` and ``n_tasks - 1`` related sources, fixed by ``s.seed``."""
    return make_task_family(n_tasks=s.n_tasks, n_target=s.n_target, n_source=s.n_source, n_test=s.n_test, n_features=s.n_features, seed=s.seed)


def make_config(s: Setup, data: dict[str, TaskData]) -> dict[str, Any]:
    """The study config of the grid over ``data``."""
    return {
        "name": "scaling",
        "seeds": s.seeds,
        "fractions": list(s.fractions),
        "tasks": {n: {"role": "target" if n == "target" else "source"} for n in data},
        "model": {"backbone": "mlp", "mlp": {"hidden": list(s.hidden)}},
        "strategies": list(STRATEGIES),
        "train": {"max_epochs": s.epochs, "batch_size": s.batch_size, "lr": s.lr, "patience": s.patience},
    }


# ---- executors --------------------------------------------------------------------------


@dataclass(frozen=True)
class Executor:
    """A way of running a whole study: ``run(config, data, out)`` writes the study folder
    ``out`` and returns the seconds the run itself took (setting up the study, or a cluster,
    is not timed)."""

    name: str
    run: Callable[[dict[str, Any], dict[str, TaskData], Path], float]


def local(workers: int) -> Executor:
    """polytask's local executor: ``Study.run`` with ``workers`` processes (1: in this process)."""

    def run(config: dict[str, Any], data: dict[str, TaskData], out: Path) -> float:
        study = Study(config, data=data)
        t0 = time.perf_counter()
        study.run(out=out, workers=workers, progress=False)
        return time.perf_counter() - t0

    return Executor(f"local-{workers}", run)


def on_ray(address: str, cpus: int) -> Executor:
    """polytask's Ray executor: ``Study.run(executor="ray", address=...)`` on a cluster of
    ``cpus`` CPUs (each run a task of one CPU). Connecting and starting the job's worker
    processes are timed: each ``run`` is a new Ray job, as each ``polytask compare`` is."""

    def run(config: dict[str, Any], data: dict[str, TaskData], out: Path) -> float:
        study = Study(config, data=data)
        t0 = time.perf_counter()
        study.run(out=out, executor="ray", address=address, progress=False)
        return time.perf_counter() - t0

    return Executor(f"ray-{cpus}", run)


# The executors compared, in this order; the first is the baseline of every speed-up.
# RAY: with --ray, main() appends on_ray(...) on a local cluster of 2 CPUs; the timings,
# speed-ups and the equality check below then include it with no other change.
EXECUTORS: list[Executor] = [local(1), local(2)]


# ---- measurement ------------------------------------------------------------------------


def metrics_of(out: Path) -> dict[str, float]:
    """``{run_id: test metric}`` of a study folder's finished runs."""
    return {r["run_id"]: r["test"] for r in ResultStore(out / "results.jsonl").rows() if r["status"] == "ok"}


def run_seconds(out: Path) -> list[float]:
    """Training seconds each run of a study folder reports (pretraining not included)."""
    return [float(r["train_seconds"]) for r in ResultStore(out / "results.jsonl").rows() if r["status"] == "ok"]


def timed(executor: Executor, config: dict[str, Any], data: dict[str, TaskData], root: Path) -> tuple[float, Path]:
    """Seconds of one study run by ``executor`` into a fresh folder under ``root``, and that folder."""
    out = Path(tempfile.mkdtemp(prefix=f"{executor.name}-", dir=root))
    return executor.run(config, data, out), out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, warm up, time the executors in turn, print times, speed-up and the check."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny grid, for a smoke test")
    p.add_argument("--repeats", type=int, help="timed runs per executor (default 3, quick 1)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the driver (default 1, as each worker)")
    p.add_argument("--ray", action="store_true", help="also run on a local Ray cluster of 2 CPUs (needs polytask[ray])")
    args = p.parse_args(argv)
    with contextlib.ExitStack() as stack:
        executors = list(EXECUTORS)
        if args.ray:
            from polytask.study.ray_cluster import LocalRayCluster

            cluster = stack.enter_context(LocalRayCluster(cpus=2))
            print(f"ray cluster: {cluster.address}, 2 CPUs, started in {cluster.started_seconds:.1f} s (stopped by process id at the end)")
            executors.append(on_ray(cluster.address, 2))
        return measure(args, executors)


def measure(args: argparse.Namespace, executors: list[Executor]) -> int:
    """Warm up, time ``executors`` in turn, print times, speed-ups, Ray's overhead and the check."""
    s = QUICK if args.quick else FULL
    if args.repeats:
        s = replace(s, repeats=args.repeats)
    torch.set_num_threads(args.threads)
    data = make_data(s)
    config = make_config(s, data)
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]

    print(f"torch {torch.__version__}, python {platform.python_version()}, {cores} CPU cores, driver {torch.get_num_threads()} thread(s), 1 per worker")
    print(
        f"grid: {s.runs} runs = strategies {', '.join(STRATEGIES)} x fractions {', '.join(f'{f:g}' for f in s.fractions)} x {s.seeds} seeds; "
        f"target + {s.n_tasks - 1} sources ({s.n_target} / {s.n_source} train rows, {s.n_test} test, {s.n_features} features), "
        f"MLP {s.n_features}->{'->'.join(map(str, s.hidden))}, at most {s.epochs} epochs, batch {s.batch_size}"
    )
    print(f"executors: {', '.join(e.name for e in executors)}")

    with tempfile.TemporaryDirectory(prefix="study-scaling-") as tmp:
        root = Path(tmp)
        # Warm-up: first-call costs (lazy imports of the analysis and report, allocator,
        # kernels) fall on a tiny grid, before anything is timed.
        few = replace(QUICK, seeds=1)
        for e in executors:
            timed(e, make_config(few, make_data(few)), make_data(few), root)
        # With Ray: the tiny grid once more, timed, to split Ray's overhead into a cost per
        # study (connecting, starting the job's workers) and a cost per run.
        tiny: dict[str, float] = {}
        if any(e.name.startswith("ray") for e in executors):
            for e in executors[1:]:
                tiny[e.name] = timed(e, make_config(few, make_data(few)), make_data(few), root)[0]

        times: dict[str, list[float]] = {e.name: [] for e in executors}
        folders: list[tuple[str, Path]] = []
        for r in range(s.repeats):
            # Alternate the order so that drift of the machine's speed hits every executor alike.
            order = executors if r % 2 == 0 else executors[::-1]
            for e in order:
                seconds, out = timed(e, config, data, root)
                times[e.name].append(seconds)
                folders.append((e.name, out))
            print(f"repeat {r + 1}: " + ", ".join(f"{e.name} {times[e.name][-1]:.2f} s" for e in order))

        base = executors[0].name
        median = {name: statistics.median(t) for name, t in times.items()}
        per_run = statistics.median(run_seconds(folders[0][1]))
        for name, t in median.items():
            print(f"{name:<8} median {t:7.2f} s  {s.runs / t:5.2f} runs/s")
        print(f"one run: median {per_run:.2f} s of training (train_seconds of {base}'s first study)")
        for e in executors[1:]:
            target = "  (target >= 1.6x on 2 cores)" if e.name == "local-2" else ""
            print(f"speed-up {e.name} / {base}: {median[base] / median[e.name]:.2f}x{target}")
        for name in (n for n in median if n.startswith("ray")):
            for ref in ("local-2", base):
                print(f"ray overhead vs {ref}: {median[name] - median[ref]:+.2f} s per study, {1000 * (median[name] - median[ref]) / s.runs:+.0f} ms per run")
            few_runs = replace(QUICK, seeds=1).runs
            if tiny and s.runs > few_runs:
                fixed = tiny[name] - tiny["local-2"]
                marginal = ((median[name] - median["local-2"]) - fixed) / (s.runs - few_runs)
                print(
                    f"  tiny grid ({few_runs} runs): {name} {tiny[name]:.2f} s, local-2 {tiny['local-2']:.2f} s; "
                    f"so about {fixed:.2f} s per study (connect, start workers) and {1000 * marginal:+.0f} ms per run on top of local-2"
                )

        # The same grid must give the same numbers whoever ran it.
        reference = metrics_of(folders[0][1])
        differ = [(name, out.name) for name, out in folders if metrics_of(out) != reference]
        same = len(reference) == s.runs and not differ
        print(f"same test metrics per run id: {'yes' if same else 'NO'} ({len(reference)} of {s.runs} runs ok, {len(folders)} studies compared)")
        for name, folder in differ:
            print(f"  {name} ({folder}) differs from {base}'s first study")

    load_after = os.getloadavg()[0]
    print(f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after")
    # With 2 workers the study keeps 2 cores busy; a load average a core or more above that
    # means other processes took cores from it, and the speed-up means nothing.
    if max(load_before, load_after) > 3 or cores < 2:
        print("warning: other processes were busy during the run, or fewer than 2 cores; rerun on a quiet 2-core machine")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

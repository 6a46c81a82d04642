"""The local executor: runs of a study in forked worker processes on this machine.

The driver hands each job to a pool and stores every row as it arrives. Workers inherit
what they run through ``fork`` (no pickling: users' backbones are often lambdas or local
classes), ignore Ctrl-C (the driver alone handles it and terminates them, so no worker dies
halfway through a result) and die with the driver, even when it is killed. A worker the
system kills stops the study with :class:`~polytask.core.errors.WorkerDiedError` instead of a
wait for a result that will never come.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing as mp
import os
import queue
import signal
import sys
from collections.abc import Callable
from typing import Any

import torch

from polytask.core.errors import WorkerDiedError
from polytask.study.plan import Job, RunSpec

# prctl option: the signal a process gets when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1
# How often the driver checks that its worker processes are alive while it waits.
POLL_SECONDS = 1.0

# What the workers run, ``(pretrain, execute)``: set before the pool forks so children
# inherit it.
_WORK: tuple[Callable[[RunSpec], Any], Callable[[Job], list[dict[str, Any]]]] | None = None


def run_local(
    pretrain: Callable[[RunSpec], Any],
    execute: Callable[[Job], list[dict[str, Any]]],
    pretrainings: list[RunSpec],
    jobs: list[Job],
    workers: int,
    deliver: Callable[[list[dict[str, Any]]], None],
    gpus: list[str] | None = None,
) -> None:
    """Run ``pretrainings``, then ``jobs``, in ``workers`` forked processes.

    Args:
        pretrain: trains (and caches) one in-study pretraining; its failure is left to the
            runs that need it, which retry it and record the failure themselves.
        execute: trains one job and returns its rows.
        deliver: called in the driver with each job's rows as they arrive.
        gpus: GPU ids the workers are pinned to in turn (``CUDA_VISIBLE_DEVICES``, set
            before a worker touches CUDA); empty or None: no pinning. The driver never
            initialises CUDA (it only counts devices), so forked workers can use it.

    On Ctrl-C (or any error here) the workers are terminated at once: what has not started
    is dropped, every row already returned is delivered, and the error is raised again.
    """
    global _WORK
    _WORK = (pretrain, execute)
    arrived: queue.Queue = queue.Queue()
    ctx = mp.get_context("fork")
    pool = ctx.Pool(workers, initializer=_init_worker, initargs=(ctx.Value("i", 0), list(gpus or [])))
    # A Pool quietly replaces a worker that dies (the OOM killer, a crash), and the job it
    # held never reports back: watch the original workers instead of waiting forever.
    started = list(pool._pool)
    try:
        for waiting in [pool.apply_async(_pretrain_job, (spec,)) for spec in pretrainings]:
            while not waiting.ready():
                waiting.wait(POLL_SECONDS)
                _check_alive(started)
        for job in jobs:
            pool.apply_async(_run_job, (job,), callback=arrived.put, error_callback=arrived.put)
        pool.close()
        for _ in jobs:
            while True:
                try:
                    rows = arrived.get(timeout=POLL_SECONDS)
                    break
                except queue.Empty:
                    _check_alive(started)
            if isinstance(rows, BaseException):
                raise rows  # a ConfigError a run found: the study cannot go on
            deliver(rows)
    except BaseException:
        pool.terminate()
        while not arrived.empty():
            rows = arrived.get_nowait()
            if not isinstance(rows, BaseException):
                deliver(rows)
        raise
    finally:
        pool.join()


def _check_alive(workers: list) -> None:
    """Raise :class:`WorkerDiedError` when one of a pool's worker processes has ended."""
    for p in workers:
        if p.exitcode is not None:
            how = f"killed by {signal.Signals(-p.exitcode).name}" if p.exitcode < 0 else f"exit code {p.exitcode}"
            hint = " (out of memory? try fewer --workers)" if p.exitcode == -signal.SIGKILL else ""
            raise WorkerDiedError(f"a worker process ended while running the study ({how}{hint}); its run was lost")


def pin_gpu(counter, gpus: list[str]) -> str | None:
    """Give this worker the next GPU of ``gpus`` in turn (a replaced worker takes the next)."""
    if not gpus:
        return None
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    return os.environ["CUDA_VISIBLE_DEVICES"]


def _init_worker(counter, gpus: list[str]) -> None:
    pin_gpu(counter, gpus)
    # Several processes on few cores: one thread each avoids oversubscription.
    torch.set_num_threads(1)
    # Ctrl-C reaches every process of the terminal's group; the driver alone handles it
    # (it terminates the workers), so a worker never dies halfway through a result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the driver dies, even by SIGKILL (no-op elsewhere)."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return  # no libc to ask: workers then end with their pool, not with a killed driver
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _pretrain_job(spec: RunSpec) -> None:
    try:
        _WORK[0](spec)
    except Exception:
        return  # the dependent runs retry it and record the failure themselves


def _run_job(job: Job) -> list[dict[str, Any]]:
    return _WORK[1](job)

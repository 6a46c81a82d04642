"""The Ray executor: runs of a study as Ray tasks, on this machine or a cluster.

The driver (the process running the study) keeps the study folder; the tasks never see it,
as they may run on other machines. Each task gets the study itself through Ray's object
store (cloudpickled once per run of the grid: its loaded data travel with it, and so does
a user's backbone that is a lambda or a local class), trains in a temporary folder of its
own on the worker and returns what it wrote there as bytes: the rows and each cell's test
predictions (and saved models). The driver writes those files under the study folder, then
appends the rows, as each job finishes, so resume, progress and Ctrl-C work as with the
local executor.

The in-study pretrainings are submitted first, one task each. Each one's cache files go
back to the driver, which writes them into the study folder, and stay in the object
store: every job that starts from one waits for it and gets its files written into its
temporary folder before it runs, so each (target, seed, fraction) is pretrained once;
jobs that start from none do not wait. Pretrainings an earlier run cached in the study
folder are read by the driver and shipped the same way. Each task takes one CPU, and one GPU when the study runs on
CUDA (Ray then sets ``CUDA_VISIBLE_DEVICES`` to that GPU); the cluster's free resources
decide how many run at once. A task is not retried: a worker that dies (the system's OOM
killer, a lost node) stops the study with :class:`~polytask.core.errors.WorkerDiedError`,
every finished run kept.

Ray is optional (``pip install 'polytask[ray]'``) and imported only here, when a study
runs on it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polytask.core.errors import ConfigError, WorkerDiedError
from polytask.core.io import write_atomic
from polytask.core.processes import running
from polytask.study.plan import Job, RunSpec

EXECUTORS = ("local", "ray")
INSTALL_HINT = "pip install 'polytask[ray]' (or pip install 'ray[default]>=2.9')"
# How often the driver returns from waiting on its tasks (so Ctrl-C is handled at once).
POLL_SECONDS = 1.0
# How long the driver makes sure that cancelled tasks ended (on Ctrl-C or an error).
CANCEL_SECONDS = 5.0
# How long a HOST:PORT may take to accept a connection before the study gives up on it
# (Ray itself retries an unreachable address for minutes).
CONNECT_SECONDS = 10.0

Files = dict[str, bytes]  # path relative to the study folder -> content
# A task's temporary folder on its worker: <tmp>/polytask-ray-<worker pid>-<random>.
SCRATCH_PREFIX = "polytask-ray-"

# In a worker process: the (token, (pretrain, execute)) of the grid it last ran a task of,
# so that consecutive tasks of one grid share one study (its feature cache, tokenizers).
_WORK: tuple[str, Any] | None = None


def check_executor(executor: str, workers: int = 1, address: str | None = None) -> None:
    """Refuse, in one line, an executor this study cannot use (before anything is written).

    Raises:
        ConfigError: an unknown executor, Ray asked for but not installed, ``workers`` with
            Ray (the cluster's resources decide how many runs run at once), or an address
            without Ray.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor '{executor}' is not one of {', '.join(EXECUTORS)}")
    if executor != "ray":
        if address is not None:
            raise ConfigError(f"address '{address}' is for executor 'ray' (--executor ray); drop it or run on Ray")
        return
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(f"executor 'ray' needs Ray, which is not installed here: {INSTALL_HINT}")
    if workers > 1:
        raise ConfigError(
            f"workers={workers} is for the local executor: on Ray each run takes one CPU (and one GPU on CUDA) and the "
            "cluster's free resources decide how many run at once; drop --workers"
        )
    if address is not None and not address.strip():
        raise ConfigError("address '' is empty; give HOST:PORT of the Ray head (or 'auto', or leave it out)")


def run_ray(
    pretrain: Callable[[Path, RunSpec], Any],
    execute: Callable[[Path, Job], list[dict[str, Any]]],
    pretrainings: list[RunSpec],
    jobs: list[Job],
    deliver: Callable[[list[dict[str, Any]]], None],
    folder: Path,
    inputs: Callable[[Job], list[str]],
    needs: Callable[[Job], list[RunSpec]] = lambda job: [],
    address: str | None = None,
    device: str = "cpu",
) -> None:
    """Run ``pretrainings`` and ``jobs`` as Ray tasks; store what they write under ``folder``.

    Args:
        pretrain: on a worker, trains (and caches under the folder it is given) one in-study
            pretraining; its failure is left to the runs that need it, which retry it and
            record the failure themselves.
        execute: on a worker, trains one job in the folder it is given and returns its rows.
        pretrainings: submitted first; each one's files go to ``folder`` when it finishes.
        deliver: called in the driver with each job's rows as they arrive, after the files
            the job wrote are under ``folder``.
        folder: the study folder (only the driver reads and writes it).
        inputs: the files of ``folder`` (relative paths) a job reads before it runs (cached
            pretrainings of an earlier run, its tuning); read once, shared through the object store.
        needs: the ``pretrainings`` a job starts from: it waits for them and gets their files
            from the object store; a job that needs none starts at once.
        address: ``HOST:PORT`` of a running Ray cluster's head, ``auto``, or ``ray://...``;
            None: ``RAY_ADDRESS`` if set, else a Ray instance started on this machine for the
            study and stopped after it. A Ray session this process already opened is used
            as it is (and left open).
        device: the study's ``train.device``: each task takes a GPU for ``cuda`` and
            ``cuda:N``, and for ``auto`` when the cluster has GPUs.

    ``pretrain`` and ``execute`` travel to the workers by cloudpickle, once. On Ctrl-C (or
    any error here) the tasks not finished are cancelled, every task already finished is
    stored (a job's rows delivered), and the error is raised again.
    """
    import ray

    started = _connect(ray, address)
    try:
        gpus = _gpus_per_task(ray, device, address)
        work = [uuid.uuid4().hex, ray.put((pretrain, execute))]  # in a list: the workers fetch it, once each
        options = {"num_cpus": 1, "num_gpus": gpus, "max_retries": 0}
        pretrain_task = ray.remote(_pretrain_task).options(**options)
        job_task = ray.remote(_job_task).options(**options)
        pretrained = {spec: pretrain_task.remote(work, spec) for spec in pretrainings}
        running: dict[Any, tuple[str, Any]] = {ref: ("pretraining", spec) for spec, ref in pretrained.items()}
        shared: dict[str, Any] = {}  # file of the study folder -> its bytes in the object store
        for job in jobs:
            paths = inputs(job)
            for path in paths:
                if path not in shared:
                    shared[path] = ray.put((folder / path).read_bytes())
            before = [pretrained[spec] for spec in dict.fromkeys(needs(job)) if spec in pretrained]
            running[job_task.remote(work, job, paths, len(before), *before, *[shared[p] for p in paths])] = ("job", job)

        def finished(item: tuple[str, Any], result: Any) -> None:
            if item[0] == "pretraining":
                _write(folder, result)
                return
            rows, files = result
            _write(folder, files)  # predictions first: a stored row always has them
            deliver(rows)

        _drain(ray, running, finished)
    finally:
        if started:
            ray.shutdown()


def _connect(ray, address: str | None) -> bool:
    """Open a Ray session for the study; True when this call opened it (and must close it)."""
    if ray.is_initialized():
        here = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", here) and "://" not in address:
            raise ConfigError(f"this process is already connected to the Ray cluster at '{here}', not '{address}'; call ray.shutdown() first")
        return False
    if address is not None:
        _check_reachable(address)
        try:
            node_ip = ray.util.get_node_ip_address()
        except Exception:  # no address of its own to resolve: nothing Ray could rewrite either
            node_ip = "127.0.0.1"
        _check_loopback(address, node_ip)
    env = {} if address is not None or os.environ.get("RAY_ADDRESS") else {"include_dashboard": False}
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, **env)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = f" at '{address}'" if address else ""
        hint = "; a cluster with token authentication needs RAY_AUTH_MODE=token here" if address and not os.environ.get("RAY_AUTH_MODE") else ""
        raise ConfigError(f"could not start or reach a Ray cluster{where}: {_first_line(e)}{hint}") from None
    return True


def _check_reachable(address: str) -> None:
    """A ``HOST:PORT`` that accepts no connection fails in seconds, not after Ray's retries."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address:
        return
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"address '{address}' is not HOST:PORT (the Ray head's GCS port, 6379 by default), 'auto' or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as e:
        raise ConfigError(f"no Ray cluster answers at '{address}' ({e.strerror or e}); start one with 'ray start --head' or check the address") from None


def _check_loopback(address: str, node_ip: str) -> None:
    """Ray connects to a loopback ``HOST:PORT`` at this node's IP instead (unless the driver's
    environment has ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` when Ray is imported): a head
    that listens on the loopback alone would make it wait for minutes. Fail in one line."""
    host, _, port = address.rpartition(":")
    if not _is_loopback(host) or _is_loopback(node_ip):
        return
    try:
        socket.create_connection((node_ip, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError:
        raise ConfigError(
            f"Ray connects to '{address}' at this node's IP, {node_ip}, where nothing answers (the head listens on the loopback "
            "only); give --address with the IP the head was started with, or set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
            "for a head started with --node-ip-address=127.0.0.1"
        ) from None


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _gpus_per_task(ray, device: str, address: str | None) -> int:
    """1 when the study runs on CUDA (or on ``auto`` with GPUs in the cluster), else 0."""
    have = ray.cluster_resources().get("GPU", 0)
    if device.startswith("cuda"):
        if have < 1:
            where = f"at '{address}'" if address else "Ray runs on"
            raise ConfigError(f"device '{device}' was asked for, but the Ray cluster {where} has no GPU; use --device cpu or auto")
        return 1
    return 1 if device == "auto" and have >= 1 else 0


def _drain(ray, running: dict[Any, Any], done: Callable[[Any, Any], None]) -> None:
    """Call ``done(item, value)`` for each task of ``running`` (``{ref: item}``) as it finishes.

    On any error (Ctrl-C, a dead worker, a ConfigError a run found, a failing ``done``) the
    tasks not finished are cancelled, the finished ones are still handed to ``done``, and
    the error is raised again.
    """
    pending = list(running)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                done(running[ref], _value(ray, ref))
    except BaseException:
        ready, rest = ray.wait(pending, num_returns=len(pending), timeout=0) if pending else ([], [])
        _cancel(ray, rest)
        for ref in ready:
            try:
                done(running[ref], _value(ray, ref))
            except Exception:
                continue  # that task failed too: the first error is the one reported
        raise


def _cancel(ray, refs: list, seconds: float = CANCEL_SECONDS) -> None:
    """Cancel ``refs``, killing the workers of those running, and see that they end.

    Ray's cancel is best effort: a task being handed to a worker at that moment can escape
    it and run on. Each task is cancelled again until its result says it ended, for at
    most ``seconds``.
    """
    deadline = time.monotonic() + seconds
    left = list(refs)
    while left:
        for ref in left:
            with contextlib.suppress(Exception):  # finished meanwhile, or already gone
                ray.cancel(ref, force=True)
        if time.monotonic() >= deadline:
            return
        _, left = ray.wait(left, num_returns=len(left), timeout=0.5)


def _value(ray, ref) -> Any:
    """A finished task's result; its failure as polytask's one-line errors."""
    try:
        return ray.get(ref)  # finished: no wait
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, ConfigError):
            raise ConfigError(str(cause)) from None  # a ConfigError a run found: the study cannot go on
        if isinstance(cause, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        # Not a run's failure (execute_job records those): the task's own machinery on its worker.
        what = f"{type(cause).__name__}: {_first_line(cause)}" if cause is not None else _first_line(e)
        raise WorkerDiedError(f"a Ray task of the study failed on its worker ({what}); its run was lost") from None
    except ray.exceptions.TaskCancelledError:
        raise WorkerDiedError("a Ray task of the study was cancelled from outside the study; its run was lost") from None
    except ray.exceptions.RayError as e:
        hint = " (out of memory? give the cluster more memory per CPU)" if "memory" in str(e).lower() else ""
        raise WorkerDiedError(f"a Ray worker ended while running the study ({type(e).__name__}: {_first_line(e)}{hint}); its run was lost") from None


def _first_line(e: BaseException, limit: int = 200) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    line = lines[0] if lines else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _write(folder: Path, files: Files) -> None:
    """Write what a task returned under the study folder, each file atomically."""
    for path, data in files.items():
        relative = Path(path)
        if relative.is_absolute() or ".." in relative.parts:
            raise WorkerDiedError(f"a Ray task returned a file outside the study folder ({path!r})")
        write_atomic(folder / relative, data)


# ---- in the worker ----------------------------------------------------------------------


def _work(work: list) -> tuple[Callable, Callable]:
    """``(pretrain, execute)`` of this grid: fetched from the object store once per worker."""
    global _WORK
    token, ref = work
    if _WORK is None or _WORK[0] != token:
        import ray
        import torch

        torch.set_num_threads(1)  # one CPU per task, as each local worker process
        _WORK = (token, ray.get(ref))
    return _WORK[1]


def _in_scratch_folder(fn: Callable[[Path, Any], Any], arg: Any, given: Files) -> tuple[Any, Files]:
    """``fn(folder, arg)`` in a temporary folder holding ``given``; its result and the files
    it wrote there (relative paths)."""
    _remove_orphans()
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as tmp:
        folder = Path(tmp)
        for path, data in given.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
        result = fn(folder, arg)
        written = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return result, {path: data for path, data in written.items() if given.get(path) != data}


def _remove_orphans() -> None:
    """Remove the scratch folders of this node's worker processes that were killed (a
    cancelled task, Ctrl-C, the OOM killer) before they could remove their own."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not running(int(pid)):  # a killed worker not yet reaped is a zombie: its folder is an orphan too
            shutil.rmtree(folder, ignore_errors=True)


def _pretrain_task(work: list, spec: RunSpec) -> Files:
    pretrain, _ = _work(work)
    try:
        return _in_scratch_folder(pretrain, spec, {})[1]
    except Exception:
        return {}  # the dependent runs retry it and record the failure themselves


def _job_task(work: list, job: Job, paths: list[str], n_pretrained: int, *given: Any) -> tuple[list[dict[str, Any]], Files]:
    """``given``: the files of ``n_pretrained`` pretrainings, then the contents of ``paths``."""
    _, execute = _work(work)
    files: Files = {}
    for pretraining in given[:n_pretrained]:
        files.update(pretraining)
    files.update(zip(paths, given[n_pretrained:]))
    return _in_scratch_folder(execute, job, files)

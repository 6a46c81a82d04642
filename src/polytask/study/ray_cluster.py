"""A throwaway Ray cluster on this machine, for tests and benchmarks of the Ray executor.

:class:`LocalRayCluster` runs ``ray start --head`` bound to 127.0.0.1 on free ports, with
its own temporary folder, in a session of its own, and stops it by process id: every
process of that session, and any other naming its temporary folder, with their children.
It never runs ``ray stop``, which would stop every Ray cluster of the machine's user. A
watchdog process stops the cluster the same way if the process that started it dies
without stopping it (a test run killed by a timeout, say).

Example:
    >>> with LocalRayCluster(cpus=2) as cluster:  # doctest: +SKIP
    ...     Study(config, data=data).run(out="runs/x", executor="ray", address=cluster.address)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from polytask.core.processes import running

# Without the first Ray rewrites 127.0.0.1 to the node's IP and binds every interface; the
# cluster takes no token (it listens on the loopback only), whatever ~/.ray/auth_token a
# local ``ray.init()`` may have left. They are set for ``ray start`` and, while the cluster
# runs, for the driver (this process); Ray reads the first when it is imported: set it
# before the driver's first ``import ray``.
ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """A Ray head node on 127.0.0.1 with ``cpus`` CPUs, started on entry, stopped on exit.

    Attributes:
        address: ``127.0.0.1:PORT``, for ``Study.run(executor="ray", address=...)``.
        started_seconds: how long ``ray start`` took.
    """

    def __init__(self, cpus: int = 2, object_store_mb: int = 200, timeout: float = 120.0):
        self.cpus = cpus
        self.object_store_mb = object_store_mb
        self.timeout = timeout
        self.address = ""
        self.started_seconds = 0.0
        self._tmp: Path | None = None
        self._session: int | None = None
        self._watchdog: subprocess.Popen | None = None
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Run ``ray start --head``; raise RuntimeError (after stopping what started) if it fails."""
        ray = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
        if ray is None:
            raise RuntimeError("the 'ray' command was not found next to this Python; pip install 'ray[default]>=2.9'")
        if "ray" in sys.modules and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
            raise RuntimeError("ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set: this process could not reach a cluster on 127.0.0.1")
        # Ray's socket paths must stay short (107 bytes): a short folder under /tmp.
        self._tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp" if os.path.isdir("/tmp") else None))
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        cmd = [
            ray,
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.cpus}",
            "--num-gpus=0",
            "--include-dashboard=false",
            f"--temp-dir={self._tmp}",
            "--disable-usage-stats",
            f"--object-store-memory={self.object_store_mb * 1_000_000}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
        ]
        for key, value in ENV.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        t0 = time.perf_counter()
        # A session of its own: every process of the cluster (workers too) has its id.
        proc = subprocess.Popen(cmd, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self._session = proc.pid
        # The watchdog runs this file as a script: it imports the standard library alone.
        watch = [sys.executable, os.path.abspath(__file__), str(os.getpid()), str(self._session), str(self._tmp)]
        self._watchdog = subprocess.Popen(watch, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"'ray start' did not finish within {self.timeout:.0f} s") from None
        self.started_seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"'ray start' failed (exit code {proc.returncode}): {output.strip().splitlines()[-1:] or ''}")

    def processes(self) -> list[int]:
        """Process ids of the cluster: its session's, those naming its folder, their children."""
        return _processes(self._session, self._tmp) if self._tmp is not None else []

    def stop(self, grace: float = 1.0) -> None:
        """End every process of the cluster (SIGTERM, then SIGKILL after ``grace`` s), by id."""
        if self._tmp is not None:
            _end(self._session, self._tmp, grace)
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait(timeout=10)
            self._watchdog = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _processes(session: int | None, folder: Path) -> list[int]:
    """Processes of session ``session``, those naming ``folder``, and their children."""
    table = _process_table()
    mine = {pid for pid, (_, sid, cmd) in table.items() if sid == session or str(folder) in cmd}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in mine} - mine
        mine |= children
        grew = bool(children)
    return sorted(mine - {os.getpid()})


def _end(session: int | None, folder: Path, grace: float) -> None:
    """SIGTERM every process of the cluster, SIGKILL what is left after ``grace`` s, remove its folder."""
    pids = _processes(session, folder)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(running(p) for p in pids):
        time.sleep(0.1)
    pids = set(pids) | set(_processes(session, folder))
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10.0  # a killed process takes a moment to end
    while time.monotonic() < deadline and any(running(p) for p in pids):
        time.sleep(0.05)
    shutil.rmtree(folder, ignore_errors=True)


def _watch(parent: int, session: int, folder: Path) -> None:
    """The watchdog: once ``parent`` has ended, end the cluster it left behind."""
    while running(parent):
        time.sleep(1.0)
    _end(session, folder, grace=1.0)


def _process_table() -> dict[int, tuple[int, int, str]]:
    """``{pid: (parent pid, session id, command line)}`` of this machine's processes (Linux /proc)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), int(fields[3]), cmd)
    return table


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


if __name__ == "__main__":  # the watchdog: python ray_cluster.py PARENT SESSION FOLDER
    _watch(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))

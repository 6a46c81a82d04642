"""The Ray executor on a real local Ray cluster: the same numbers as the local executor,
every row once with its predictions, resume, one pretraining per (target, seed), and
Ctrl-C, a dead worker and a ConfigError handled as the local executor handles them."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_config
from typer.testing import CliRunner

from polytask import Study
from polytask.cli import app
from polytask.core.errors import ConfigError, WorkerDiedError
from polytask.core.processes import running
from polytask.data import write_npz_family
from polytask.study import ray_executor
from polytask.study.plan import Job, RunSpec
from polytask.study.ray_cluster import ENV
from polytask.study.ray_executor import check_executor, run_ray
from polytask.study.store import ResultStore, load_predictions

# Ray reads these when it is imported (before any test imports it): the test cluster and
# this driver stay on 127.0.0.1.
for _key, _value in ENV.items():
    os.environ.setdefault(_key, _value)
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'polytask[ray]')")
# Every wait of these tests is bounded: a test (or the cluster's start) that takes longer has hung.
LIMIT = 120


class Hung(Exception):
    pass


@pytest.fixture(autouse=True)
def bounded():
    """Fail a test that runs past LIMIT seconds instead of hanging the suite."""

    def expire(signum, frame):
        raise Hung(f"the test ran past {LIMIT} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ---- refused in one line, before anything runs --------------------------------------------


def test_executor_choices_are_checked(monkeypatch):
    with pytest.raises(ConfigError, match="executor 'dask' is not one of local, ray"):
        check_executor("dask")
    with pytest.raises(ConfigError, match="is for executor 'ray'"):
        check_executor("local", address="10.0.0.1:6379")
    monkeypatch.setattr(ray_executor.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"needs Ray, which is not installed here: pip install 'polytask\[ray\]'"):
        check_executor("ray")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "dask"], "error: executor 'dask' is not one of local, ray"),
        (["--address", "10.0.0.1:6379"], "error: address '10.0.0.1:6379' is for executor 'ray' (--executor ray)"),
    ],
)
def test_the_command_line_refuses_an_executor_it_cannot_use_in_one_line(tmp_path, args, message):
    # Checked before the config is even read.
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "out"), *args])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith(message), result.output
    assert not (tmp_path / "out").exists()


@needs_ray
def test_workers_with_ray_and_an_address_nothing_answers_are_one_line(tiny_family, tmp_path):
    import ray

    from polytask.study.ray_cluster import free_port

    with pytest.raises(ConfigError, match="workers=2 is for the local executor"):
        check_executor("ray", workers=2)
    if ray.is_initialized():
        pytest.skip("this process is connected to a Ray cluster already (tests run out of order)")
    study, t0 = Study(tiny_config(tiny_family, seeds=1), data=tiny_family), time.monotonic()
    with pytest.raises(ConfigError, match="no Ray cluster answers at '127.0.0.1:"):
        study.run_grid(out=tmp_path / "s", executor="ray", address=f"127.0.0.1:{free_port()}", progress=False)
    assert time.monotonic() - t0 < 30
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        ray_executor._check_reachable("headnode")


# ---- on a real cluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A real Ray head on 127.0.0.1 with 2 CPUs, for the whole module, stopped by process id."""
    from polytask.study.ray_cluster import LocalRayCluster

    with LocalRayCluster(cpus=2, object_store_mb=200, timeout=LIMIT) as c:
        yield c
        pids = c.processes()
    assert pids and not [p for p in pids if running(p)], "a process of the cluster outlived it"


@pytest.fixture(scope="module")
def connected(cluster):
    """This process connected to ``cluster`` for the tests that follow: the executor then
    uses that session (one Ray job, so its worker processes are reused) and leaves it open."""
    import ray

    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    yield cluster
    ray.shutdown()


def _rows(out: Path) -> list[dict]:
    return ResultStore(out / "results.jsonl").rows()


@needs_ray
def test_a_study_on_ray_matches_the_local_executor_resumes_and_pretrains_once(cluster, tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, seeds=2, strategies=["scratch", "fine-tune", "feature-extraction", "mtl"])
    t0 = time.monotonic()
    Study(cfg, data=tiny_family).run_grid(out=tmp_path / "ray", executor="ray", address=cluster.address, progress=False)
    assert time.monotonic() - t0 < LIMIT
    Study(cfg, data=tiny_family).run_grid(out=tmp_path / "local", workers=1, progress=False)

    on_ray, local = _rows(tmp_path / "ray"), _rows(tmp_path / "local")
    assert len(local) == 2 * 2 * 4  # seeds x fractions x strategies, one target
    # Every row once, each with its predictions, and the same numbers as the local executor.
    assert sorted(r["run_id"] for r in on_ray) == sorted(r["run_id"] for r in local)
    assert all(r["status"] == "ok" for r in on_ray)
    assert {r["run_id"]: r["test"] for r in on_ray} == {r["run_id"]: r["test"] for r in local}
    assert all(load_predictions(tmp_path / "ray", r) is not None for r in on_ray)

    # One in-study pretraining per (target, seed) (one target: every fraction shares it),
    # written into the study folder, and every transfer run started from that very one.
    cached = sorted(p.relative_to(tmp_path / "ray").as_posix() for p in (tmp_path / "ray" / "pretrained").rglob("*.pt"))
    assert cached == ["pretrained/target/1/seed0.pt", "pretrained/target/1/seed1.pt"]
    seconds = {s: torch.load(tmp_path / "ray" / f"pretrained/target/1/seed{s}.pt", weights_only=True)["seconds"] for s in (0, 1)}
    transfer = [r for r in on_ray if r["strategy"] in ("fine-tune", "feature-extraction")]
    assert len(transfer) == 8 and all(r["pretrain_seconds"] == pytest.approx(seconds[r["seed"]]) for r in transfer)

    # Resume: nothing left to run, nothing run again (and no cluster needed for that).
    before = (tmp_path / "ray" / "results.jsonl").read_text()
    Study(cfg, data=tiny_family).run_grid(out=tmp_path / "ray", executor="ray", address="127.0.0.1:1", progress=False)
    assert (tmp_path / "ray" / "results.jsonl").read_text() == before


@needs_ray
def test_compare_on_ray_from_the_command_line(connected, tiny_family, tmp_path):
    paths = write_npz_family(tiny_family, tmp_path / "data")
    cfg = tiny_config(tiny_family, seeds=1, fractions=[1.0], strategies=["scratch", "fine-tune"])
    cfg["tasks"] = {n: {**t, "data": {"npz": str(paths[n])}} for n, t in cfg["tasks"].items()}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "study"
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "study.yaml"), "--out", str(out), "--executor", "ray", "--address", connected.address])
    assert result.exit_code == 0, result.output
    assert sorted(r["run_id"] for r in _rows(out)) == ["target/fine-tune/1/seed0", "target/scratch/1/seed0"]
    assert (out / "report.html").exists()


# ---- run_ray itself, with stand-in work ---------------------------------------------------
# The callables travel to the workers by value (nested functions), so they import what they use.


def _jobs(n: int) -> list[Job]:
    return [Job("scratch", 1.0, seed, ("target",)) for seed in range(n)]


@needs_ray
def test_files_come_back_before_rows_and_a_config_error_stops_the_study(connected, tmp_path):
    folder = tmp_path / "study"
    (folder / "pretrained").mkdir(parents=True)
    (folder / "pretrained" / "given.pt").write_bytes(b"cached")

    def pretrain(out, spec):
        from pathlib import Path

        Path(out, "pretrained", f"{spec.task}-{spec.seed}.pt").parent.mkdir(parents=True, exist_ok=True)
        Path(out, "pretrained", f"{spec.task}-{spec.seed}.pt").write_bytes(b"pretrained")

    def execute(out, job):
        from pathlib import Path

        from polytask.core.errors import ConfigError

        if job.seed == 9:
            raise ConfigError("field 'tasks.target.data': a problem a run found")
        if job.seed == 8:
            raise OSError(28, "No space left on device")  # not a run's failure: the worker's
        given = Path(out, "pretrained", "given.pt").read_bytes() + Path(out, "pretrained", "target-0.pt").read_bytes()
        Path(out, "predictions").mkdir()
        Path(out, "predictions", f"seed{job.seed}.npz").write_bytes(given)
        return [{"run_id": job.specs[0].run_id, "seed": job.seed, "status": "ok", "out": str(out)}]

    def deliver(rows):
        for row in rows:  # a row arrives after its files, from a folder of the worker's own
            assert not Path(row["out"]).exists() and folder not in Path(row["out"]).parents
            assert (folder / "predictions" / f"seed{row['seed']}.npz").read_bytes() == b"cachedpretrained"

    # A file of the study folder (a pretraining cached by an earlier run), and a pretraining
    # of this run: each job gets both written into its own folder before it runs.
    pretraining = RunSpec("target", "pretrain", 1.0, 0)
    given = lambda job: ["pretrained/given.pt"]  # noqa: E731
    run_ray(pretrain, execute, [pretraining], _jobs(2), deliver, folder, given, needs=lambda job: [pretraining], address=connected.address)
    assert (folder / "pretrained" / "target-0.pt").read_bytes() == b"pretrained"
    assert sorted(p.name for p in (folder / "predictions").iterdir()) == ["seed0.npz", "seed1.npz"]

    with pytest.raises(ConfigError, match="a problem a run found"):
        run_ray(pretrain, execute, [], [Job("scratch", 1.0, 9, ("target",))], deliver, folder, lambda job: [], address=connected.address)
    with pytest.raises(WorkerDiedError, match=r"failed on its worker \(OSError: \[Errno 28\] No space left on device\)"):
        run_ray(pretrain, execute, [], [Job("scratch", 1.0, 8, ("target",))], deliver, folder, lambda job: [], address=connected.address)
    with pytest.raises(ConfigError, match="device 'cuda:1' was asked for, but the Ray cluster at '127.0.0.1:[0-9]+' has no GPU"):
        run_ray(pretrain, execute, [], _jobs(1), deliver, folder, lambda job: [], address=connected.address, device="cuda:1")
    with pytest.raises(ConfigError, match="already connected to the Ray cluster at"):
        run_ray(pretrain, execute, [], _jobs(1), deliver, folder, lambda job: [], address="10.0.0.1:6379")


# The Ctrl-C scenario runs as a driver process of its own: Ray's core worker may end the
# process that drives it while cancelled tasks are killed (seen once in a loaded suite as
# an xdist worker dying mid-test, never alone), and a test's driver must not be the test
# runner. A driver that ends without reporting is run once more; its output is kept.
CTRL_C_DRIVER = """
import json, sys, time
from pathlib import Path
import ray
from polytask.study.plan import Job
from polytask.study.ray_executor import run_ray

address, tmp = sys.argv[1], Path(sys.argv[2])
marks = tmp / "marks"
marks.mkdir(exist_ok=True)

def execute(folder, job):
    import time
    from pathlib import Path
    if job.seed >= 2:  # slow: cancelled before it could leave its mark
        time.sleep(2)
        Path(str(marks), f"seed{job.seed}").touch()
    return [{"run_id": job.specs[0].run_id, "seed": job.seed, "status": "ok"}]

delivered = []

def deliver(rows):
    delivered.extend(rows)
    if len(delivered) == 1:
        raise KeyboardInterrupt  # Ctrl-C while the driver stores the first job's rows

ray.init(address=address, log_to_driver=False, logging_level="WARNING")
jobs = [Job("scratch", 1.0, seed, ("target",)) for seed in range(4)]
t0 = time.monotonic()
try:
    run_ray(lambda f, s: None, execute, [], jobs, deliver, tmp / "study", lambda job: [], address=address)
    raised = False
except KeyboardInterrupt:
    raised = True
seconds = time.monotonic() - t0
time.sleep(3)
print(json.dumps({"raised": raised, "seconds": seconds, "seeds": [r["seed"] for r in delivered], "marks": sorted(p.name for p in marks.iterdir())}))
"""


@needs_ray
def test_ctrl_c_cancels_the_tasks_not_finished_and_keeps_the_finished_ones(cluster, tmp_path):
    tries = []
    for attempt in range(2):
        folder = tmp_path / f"try{attempt}"
        folder.mkdir()
        env = {**os.environ, **ENV}
        proc = subprocess.run([sys.executable, "-c", CTRL_C_DRIVER, cluster.address, str(folder)], capture_output=True, text=True, timeout=LIMIT - 20, env=env)
        tries.append(proc)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode == 0 and lines:
            break
    else:
        pytest.fail(f"the driver ended without reporting twice (exit {[p.returncode for p in tries]}): {tries[-1].stderr[-1500:]}")
    result = json.loads(lines[-1])
    assert result["raised"] and result["seconds"] < 30
    assert result["seeds"] and set(result["seeds"]) <= {0, 1}
    assert result["marks"] == [], "a cancelled task went on running"


@needs_ray
def test_a_worker_that_dies_stops_the_study_with_one_line(connected, tmp_path):
    def execute(folder, job):
        import os
        import signal

        if job.seed == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
        return [{"run_id": job.specs[0].run_id, "seed": job.seed, "status": "ok"}]

    delivered: list[dict] = []
    with pytest.raises(WorkerDiedError) as e:
        run_ray(lambda f, s: None, execute, [], _jobs(2), delivered.extend, tmp_path / "study", lambda job: [], address=connected.address)
    assert "\n" not in str(e.value) and "its run was lost" in str(e.value)
    # The killed worker could not remove its scratch folder: the next task on the node does.
    run_ray(lambda f, s: None, execute, [], _jobs(1), delivered.extend, tmp_path / "study", lambda job: [], address=connected.address)
    owners = [f.name.split("-")[2] for f in Path(tempfile.gettempdir()).glob(f"{ray_executor.SCRATCH_PREFIX}*-*")]
    assert not [pid for pid in owners if pid.isdigit() and not running(int(pid))]


@needs_ray
def test_a_cluster_whose_starter_is_killed_is_stopped_by_its_watchdog(tmp_path):
    # A test run killed by a timeout never reaches its teardown: the cluster must not outlive it.
    code = (
        "import sys, time\n"
        "from polytask.study.ray_cluster import LocalRayCluster\n"
        "c = LocalRayCluster(cpus=1, object_store_mb=100)\n"
        "c.start()\n"
        "print(' '.join(map(str, c.processes())), flush=True)\n"
        "time.sleep(600)\n"
    )
    starter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, **ENV})
    try:
        pids = [int(p) for p in starter.stdout.readline().split()]
    finally:
        starter.kill()
        starter.wait(timeout=10)
    assert pids
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(running(p) for p in pids):
        time.sleep(0.2)
    assert not [p for p in pids if running(p)]

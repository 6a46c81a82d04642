"""Every run logged to MLflow (a local store and a real server) and TensorBoard, by the
process that drives the study; a tracking server that goes away fails nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings

import pytest
from conftest import tiny_config

from polytask import Study
from polytask.core.errors import PolytaskWarning
from polytask.study import tracking
from polytask.study.store import ResultStore

mlflow = pytest.importorskip("mlflow", reason="tracking needs the mlflow extra")
from mlflow.tracking import MlflowClient  # noqa: E402


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_TELEMETRY", "false")


def _config(family, **tracking_cfg):
    return tiny_config(family, seeds=1, fractions=[1.0], strategies=["scratch", "mtl"], tracking=tracking_cfg)


def _children(client, experiment_name):
    exp = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("polytask.kind") == "study"]
    return parents, [r for r in runs if r.data.tags.get("polytask.kind") == "run"]


def test_a_local_store_gets_a_run_per_row_with_its_history_and_tensorboard_its_scalars(tmp_path, tiny_family):
    out = tmp_path / "out"
    Study(_config(tiny_family, mlflow={}, tensorboard=True), data=tiny_family).run(out, progress=False)
    rows = ResultStore(out / "results.jsonl").rows()
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    (parent,), children = _children(client, "tiny")
    assert sorted(r.data.tags["polytask.run_id"] for r in children) == sorted(r["run_id"] for r in rows)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"summary.json", "report.html"}
    assert any((out / "mlartifacts").rglob("report.html"))  # in the study folder, not where the command ran
    for row in rows:
        run = next(r for r in children if r.data.tags["polytask.run_id"] == row["run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.params["strategy"] == row["strategy"] and run.data.params["config.train.lr"] == "0.005"
        assert run.data.metrics["test"] == pytest.approx(row["test"])
        history = client.get_metric_history(run.info.run_id, "val_target")
        assert [m.step for m in history] == list(range(1, row["epochs"] + 1))
        assert [m.value for m in history] == pytest.approx([h["val_target"] for h in row["history"]])
    mtl = next(r for r in children if r.data.params["strategy"] == "mtl")
    assert any(k.startswith("w_") for k in mtl.data.metrics)  # MTL task weights, per epoch
    # Resumed: nothing new to run, nothing logged twice.
    Study(_config(tiny_family, mlflow={}, tensorboard=True), data=tiny_family).run(out, progress=False)
    assert len(_children(client, "tiny")[1]) == len(rows)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard" / rows[0]["run_id"]))
    acc.Reload()
    assert [e.step for e in acc.Scalars("val_target")] == list(range(1, rows[0]["epochs"] + 1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path):
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--default-artifact-root", str(tmp_path / "artifacts")]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, uri
        except OSError:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the mlflow server did not start within 90 s")


def test_a_real_server_gets_the_runs_and_going_away_mid_study_fails_nothing(tmp_path, tiny_family, monkeypatch):
    server, uri = _serve(tmp_path)
    try:
        cfg = tiny_config(
            tiny_family, seeds=2, fractions=[0.5, 1.0], strategies=["scratch", "fine-tune"], tracking={"mlflow": {"uri": uri, "experiment": "served"}}
        )
        seen = []
        log = tracking.MlflowSink._log

        def log_then_stop(self, row):
            log(self, row)
            seen.append(row["run_id"])
            if len(seen) == 2:  # two runs reached the server; then it goes away
                assert len(_children(MlflowClient(tracking_uri=uri), "served")[1]) == 2
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()

        monkeypatch.setattr(tracking.MlflowSink, "_log", log_then_stop)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Study(cfg, data=tiny_family).run(tmp_path / "out", progress=False)
        rows = ResultStore(tmp_path / "out" / "results.jsonl").rows()
        assert len(rows) == 2 * 2 * 2 and all(r["status"] == "ok" for r in rows)  # every run finished and stored
        reported = [w for w in caught if issubclass(w.category, PolytaskWarning) and "MLflow tracking stopped" in str(w.message)]
        assert len(reported) == 1 and "results.jsonl keeps every run" in str(reported[0].message)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)

"""Sinks that see every finished run besides ``results.jsonl``: MLflow and TensorBoard.

The process driving the study feeds them (:class:`Trackers`): each row that arrives from a
worker, local or on a Ray node, is logged there, with its per-epoch history, so workers
need no access to a tracking server. ``results.jsonl`` stays the source of truth: a sink
that fails (a server that went away, a full disk) is reported once and then left alone,
and no run fails or is lost because of it.

MLflow: one experiment per study (the study's name unless ``experiment`` is set), a parent
run per study fingerprint (found again on resume, so runs of a resumed study join it), a
child run per polytask run with its parameters (task, strategy, fraction, seed and the
resolved config, flattened), per-epoch metrics (``train_loss``, ``val_<task>``,
``w_<task>`` with the epoch as step), the final test and validation metrics and timings,
and with ``save_models`` the saved backbone; the summary and the report go to the parent
run when the study is analysed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from polytask.config import StudyConfig
from polytask.core.errors import ConfigError, PolytaskWarning
from polytask.study.plan import RunSpec
from polytask.study.store import saved_model_path

# Requests to a tracking server that does not answer are not retried for minutes.
HTTP_RETRIES = "2"
HTTP_TIMEOUT = "10"
# Values of the row logged as final metrics of a run.
# Written into a run's TensorBoard folder once its row is logged: which row it was.
LOGGED = "logged"
FINAL = ("test", "val", "train_seconds", "pretrain_seconds", "epochs", "best_epoch", "trainable_params", "train_labels", "val_labels")


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"train.lr": "0.001", ...}`` (MLflow parameters are flat strings)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): json.dumps(value) if isinstance(value, list) else str(value)}


class Sink(ABC):
    """One place runs are logged to; a failure disables it with one warning. A sink says
    how it starts (:meth:`_start`) and logs a row (:meth:`_log`), and what it keeps
    of the study's summary (:meth:`_finish`)."""

    name = "sink"

    def __init__(self) -> None:
        self.broken = False

    def _safely(self, what: str, call, *args) -> Any:
        if self.broken:
            return None
        try:
            return call(*args)
        except Exception as e:  # a sink must never fail a run or the study
            self.broken = True
            first = " ".join(str(e).split())[:200]
            warnings.warn(
                f"{self.name} stopped while {what} ({type(e).__name__}: {first}); the study goes on without it and results.jsonl keeps every run",
                PolytaskWarning,
                stacklevel=3,
            )
            return None

    def start(self, config: StudyConfig, fingerprint: str, out: Path) -> None:
        self._safely("starting", self._start, config, fingerprint, out)

    def log(self, row: dict[str, Any]) -> None:
        self._safely(f"logging run {row.get('run_id')}", self._log, row)

    def finish(self, out: Path) -> None:
        self._safely("logging the summary", self._finish, out)

    @abstractmethod
    def _start(self, config: StudyConfig, fingerprint: str, out: Path) -> None:
        """Connect and prepare where the study's runs go."""

    @abstractmethod
    def _log(self, row: dict[str, Any]) -> None:
        """Log one finished run (its row of ``results.jsonl``)."""

    @abstractmethod
    def _finish(self, out: Path) -> None:
        """Log what the study's analysis wrote."""


class MlflowSink(Sink):
    """Runs as MLflow runs under one parent run per study (see the module docstring)."""

    name = "MLflow tracking"

    def __init__(self, uri: str | None, experiment: str | None):
        super().__init__()
        try:
            from mlflow.tracking import MlflowClient  # an optional extra
        except ImportError:
            raise ConfigError("field 'tracking.mlflow': needs MLflow; install it with: pip install 'polytask[mlflow]'") from None
        self._client_class = MlflowClient
        self.uri, self.experiment = uri, experiment
        self.client = None
        self.parent: str | None = None
        self.out: Path | None = None
        self.config: dict[str, str] = {}

    def _start(self, config: StudyConfig, fingerprint: str, out: Path) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", HTTP_RETRIES)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_TIMEOUT)
        self.out = out
        uri = self.uri or f"sqlite:///{(out / 'mlflow.db').resolve()}"
        self.client = self._client_class(tracking_uri=uri)
        name = self.experiment or config.name
        found = self.client.get_experiment_by_name(name)
        # The local store keeps its artifacts beside it in the study folder (MLflow's default,
        # ./mlruns, would be wherever the command was started).
        where = (out / "mlartifacts").resolve().as_uri() if self.uri is None else None
        experiment = found.experiment_id if found is not None else self.client.create_experiment(name, artifact_location=where)
        self.experiment_id = experiment
        self.config = flatten(config.model_dump(mode="json", by_alias=True))
        runs = self.client.search_runs(
            [experiment], filter_string=f"tags.`polytask.kind` = 'study' and tags.`polytask.fingerprint` = '{fingerprint}'", max_results=1
        )
        if runs:
            self.parent = runs[0].info.run_id
        else:
            tags = {"polytask.kind": "study", "polytask.fingerprint": fingerprint, "polytask.folder": str(out.resolve())}
            self.parent = self.client.create_run(experiment, run_name=f"{config.name} ({fingerprint})", tags=tags).info.run_id
            self._params(self.parent, self.config)
        self.logged = {
            r.data.tags.get("polytask.run_id")
            for r in self.client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{self.parent}'", max_results=50000)
        }

    def _params(self, run: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters per call
            self.client.log_batch(run, params=items[i : i + 100])

    def _log(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        if row["run_id"] in self.logged:
            return
        tags = {"mlflow.parentRunId": self.parent, "polytask.kind": "run", "polytask.run_id": row["run_id"], "polytask.status": row["status"]}
        if row.get("error"):
            tags["polytask.error"] = row["error"][:5000]
        run = self.client.create_run(self.experiment_id, run_name=row["run_id"], tags=tags).info.run_id
        own = {k: str(row[k]) for k in ("task", "strategy", "fraction", "seed", "metric", "model_id", "fingerprint") if k in row}
        self._params(run, {**{f"config.{k}": v for k, v in self.config.items()}, **own})
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(h["epoch"])) for h in row.get("history", []) for k, v in h.items() if k != "epoch" and v is not None]
        metrics += [Metric(k, float(row[k]), now, 0) for k in FINAL if isinstance(row.get(k), int | float)]
        for i in range(0, len(metrics), 1000):  # at most 1000 metrics per call
            self.client.log_batch(run, metrics=metrics[i : i + 1000])
        model = saved_model_path(self.out, RunSpec(row["task"], row["strategy"], row["fraction"], row["seed"]))
        if row["status"] == "ok" and model.is_file():
            self.client.log_artifact(run, str(model), "model")
        self.client.update_run(run, status="FINISHED" if row["status"] == "ok" else "FAILED")
        self.logged.add(row["run_id"])

    def _finish(self, out: Path) -> None:
        for name in ("summary.json", "report.html", "results.jsonl"):
            if (out / name).is_file():
                self.client.log_artifact(self.parent, str(out / name))
        self.client.update_run(self.parent, status="FINISHED")


class TensorBoardSink(Sink):
    """Each run's per-epoch history as TensorBoard scalars under ``<out>/tensorboard/<run>``."""

    name = "TensorBoard logging"

    def __init__(self) -> None:
        super().__init__()
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
        except ImportError:
            raise ConfigError("field 'tracking.tensorboard': needs TensorBoard; install it with: pip install 'polytask[tensorboard]'") from None
        self._writer = SummaryWriter

    def _start(self, config: StudyConfig, fingerprint: str, out: Path) -> None:
        self.root = out / "tensorboard"

    def _log(self, row: dict[str, Any]) -> None:
        folder = self.root / row["run_id"]
        mark = folder / LOGGED
        if mark.is_file() and mark.read_text() == str(row.get("finished_at")):
            return  # this very row, logged before the study was resumed
        shutil.rmtree(folder, ignore_errors=True)  # an earlier row of the run (a failure): replaced
        writer = self._writer(log_dir=str(folder))
        try:
            for h in row.get("history", []):
                for k, v in h.items():
                    if k != "epoch" and v is not None:
                        writer.add_scalar(k, float(v), int(h["epoch"]))
            for k in FINAL:
                if isinstance(row.get(k), int | float):
                    writer.add_scalar(f"final/{k}", float(row[k]), 0)
        finally:
            writer.close()
        mark.write_text(str(row.get("finished_at")))

    def _finish(self, out: Path) -> None:
        """Nothing: the summary is not a time series; each run's scalars are already written."""


class Trackers:
    """The sinks a study's config asks for (none by default), fed by the driving process."""

    def __init__(self, config: StudyConfig):
        t = config.tracking
        self.sinks: list[Sink] = []
        if t.mlflow is not None:
            self.sinks.append(MlflowSink(t.mlflow.uri, t.mlflow.experiment))
        if t.tensorboard:
            self.sinks.append(TensorBoardSink())

    def start(self, config: StudyConfig, fingerprint: str, out: Path) -> None:
        for s in self.sinks:
            s.start(config, fingerprint, out)

    def log(self, row: dict[str, Any]) -> None:
        for s in self.sinks:
            s.log(row)

    def finish(self, out: Path) -> None:
        for s in self.sinks:
            s.finish(out)

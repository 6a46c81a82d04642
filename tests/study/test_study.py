"""Running a study: outputs, resume, failures, parallel workers, the Python API."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import tiny_config
from torch import nn

from polytask import Study
from polytask.strategies import STRATEGIES
from polytask.study.store import ResultStore

REQUIRED = {"task", "strategy", "fraction", "seed", "metric", "test", "val", "train_seconds", "trainable_params", "status", "error"}


def _ids(path):
    return [r["run_id"] for r in ResultStore(path / "results.jsonl").rows()]


def test_run_writes_rows_summary_and_report(tiny_family, tmp_path):
    summary = Study(tiny_config(tiny_family), data=tiny_family).run(out=tmp_path, progress=False)
    rows = ResultStore(tmp_path / "results.jsonl").rows()
    assert len(rows) == 2 * 2 * 4 and all(REQUIRED <= set(r) for r in rows)
    assert {r["status"] for r in rows} == {"ok"}
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert len(summary["cells"]) == 2 * 4 and len(summary["recommendations"]) == 2
    assert {c["verdict"] for c in summary["cells"] if c["strategy"] == "scratch"} == {"baseline"}
    assert "data:image/png;base64" in (tmp_path / "report.html").read_text()


def test_interrupted_study_resumes_without_redoing_finished_runs(tiny_family, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_family, strategies=["scratch", "mtl"])
    study = Study(cfg, data=tiny_family)
    real = Study.execute_job
    done = []

    def interrupt_after_three(self, out, job, callbacks=()):
        if len(done) == 3:
            raise KeyboardInterrupt
        done.extend(s.run_id for s in job.specs)
        return real(self, out, job, callbacks)

    monkeypatch.setattr(Study, "execute_job", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        study.run(out=tmp_path, progress=False)
    assert _ids(tmp_path) == done
    before = (tmp_path / "results.jsonl").read_bytes()

    monkeypatch.setattr(Study, "execute_job", real)
    rerun = []
    monkeypatch.setattr(Study, "execute_job", lambda self, out, job, callbacks=(): rerun.extend(s.run_id for s in job.specs) or real(self, out, job, callbacks))
    Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    assert set(rerun).isdisjoint(done) and len(rerun) == 8 - 3
    assert (tmp_path / "results.jsonl").read_bytes().startswith(before)
    assert sorted(_ids(tmp_path)) == sorted(done + rerun)


def test_torn_last_line_is_skipped_and_next_append_starts_fresh(tmp_path):
    store = ResultStore(tmp_path / "results.jsonl")
    store.append({"run_id": "a", "status": "ok"})
    with open(store.path, "a") as f:
        f.write('{"run_id": "b", "sta')  # a crash mid-write
    assert [r["run_id"] for r in store.rows()] == ["a"]
    store.append({"run_id": "c", "status": "ok"})
    assert [r["run_id"] for r in store.rows()] == ["a", "c"]


def test_failed_run_is_recorded_and_the_study_goes_on_then_retried(tiny_family, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_family, strategies=["scratch", "mtl"], fractions=[1.0])
    real = STRATEGIES["mtl"]

    def flaky(ctx):
        if ctx.seed == 1:
            raise FloatingPointError("loss exploded")
        return real.run(ctx)

    monkeypatch.setitem(STRATEGIES, "mtl", dataclasses.replace(real, run=flaky))
    summary = Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    rows = ResultStore(tmp_path / "results.jsonl").rows()
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 4 and len(failed) == 1
    assert failed[0]["run_id"] == "target/mtl/1/seed1" and "FloatingPointError: loss exploded" in failed[0]["error"]
    assert summary["runs"]["failed"] == 1
    assert "failed" in (tmp_path / "report.html").read_text().lower()

    monkeypatch.setitem(STRATEGIES, "mtl", real)
    summary = Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    # The retry fixed it: nothing counts as failed, while the old failure stays in the log.
    assert summary["runs"] == {"ok": 4, "failed": 0, "planned": 4} and summary["failed"] == []
    assert len(ResultStore(tmp_path / "results.jsonl").rows()) == 5


def test_changed_training_rules_invalidate_old_rows(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, strategies=["scratch"], fractions=[1.0], seeds=1)
    Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    cfg["train"] = {**cfg["train"], "lr": 0.001}
    Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    rows = ResultStore(tmp_path / "results.jsonl").rows()
    assert len(rows) == 2 and rows[0]["fingerprint"] != rows[1]["fingerprint"]


def test_parallel_workers_give_the_same_numbers_as_serial(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, fractions=[1.0])
    Study(cfg, data=tiny_family).run(out=tmp_path / "serial", progress=False)
    Study(cfg, data=tiny_family).run(out=tmp_path / "parallel", workers=2, progress=False)

    def tests(p):
        return {r["run_id"]: r["test"] for r in ResultStore(p / "results.jsonl").rows()}

    assert tests(tmp_path / "serial") == tests(tmp_path / "parallel")


class UserNet(nn.Module):
    """A user's own backbone without an out_features attribute."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 12), nn.Tanh())

    def forward(self, x):
        return self.body(x)


def test_python_api_with_user_module_and_in_memory_arrays(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, seeds=1, fractions=[1.0])
    study = Study(cfg, data=tiny_family, backbone=UserNet())
    summary = study.run(out=tmp_path, progress=False)
    rows = ResultStore(tmp_path / "results.jsonl").rows()
    assert {r["status"] for r in rows} == {"ok"}
    assert rows[0]["backbone_params"] == 6 * 12 + 12
    assert summary["cells"]
    # A factory works too, and each run gets its own seeded initialization.
    torch.manual_seed(0)
    a = study.new_backbone((6,))
    b = Study(cfg, data=tiny_family, backbone=lambda: UserNet()).new_backbone((6,))
    assert a.out_features == b.out_features == 12


def test_regression_target_with_rmse(tmp_path):
    from conftest import regression_data

    data = {"target": regression_data(seed=0), "other": regression_data(seed=1)}
    cfg = tiny_config(data, strategies=["scratch", "mtl"], fractions=[1.0], seeds=2)
    summary = Study(cfg, data=data).run(out=tmp_path, progress=False)
    assert {c["metric"] for c in summary["cells"]} == {"root_mean_squared_error"}
    assert all(np.isfinite(c["mean"]) and c["mean"] > 0 for c in summary["cells"])


def test_inferred_kinds_are_told_and_written_into_the_study_config(tmp_path):
    import warnings

    import yaml

    from polytask.core.errors import PolytaskWarning
    from polytask.data import TaskData

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = np.where(x[:, 0] > 0, 2, 1)  # classes {1, 2}: neither 0/1 nor a quantity
    data = {"target": TaskData(x[:90], y[:90], x[90:], y[90:])}
    cfg = {"name": "k", "seeds": 1, "tasks": {"target": {}}, "strategies": ["scratch"], "model": {"mlp": {"hidden": [8]}}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = Study(cfg, data=data).run(out=tmp_path, progress=False)
    assert any(issubclass(w.category, PolytaskWarning) and "two classes" in str(w.message) for w in caught)
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert written["tasks"]["target"]["kind"] == "binary"
    assert summary["cells"][0]["metric"] == "accuracy_score" and summary["cells"][0]["mean"] > 0.8
    assert any("two classes" in w for w in summary["warnings"])


def test_a_torn_pretraining_file_is_recomputed_not_a_failure(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, strategies=["scratch", "fine-tune"], fractions=[1.0], seeds=1)
    Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    (cached,) = tmp_path.glob("pretrained/**/*.pt")
    cached.write_bytes(b"not a checkpoint")
    (tmp_path / "results.jsonl").unlink()
    summary = Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    assert summary["runs"] == {"ok": 2, "failed": 0, "planned": 2}
    assert "state" in torch.load(cached, weights_only=True)

"""Runs over their time budget are recorded failed with the reason; the study goes on."""

from __future__ import annotations

from conftest import FAST_TRAIN, tiny_config

from polytask import Study
from polytask.study.store import ResultStore


def test_runs_over_budget_fail_with_the_reason_and_a_larger_budget_reruns_only_them(tmp_path, tiny_family):
    slow = {**FAST_TRAIN, "max_epochs": 40, "patience": 40, "min_steps_per_epoch": 40}
    cfg = tiny_config(tiny_family, seeds=1, fractions=[1.0], strategies=["scratch", "fine-tune"], train={**slow, "max_minutes": 1e-5})
    out = tmp_path / "out"
    summary = Study(cfg, data=tiny_family).run(out, progress=False)
    rows = ResultStore(out / "results.jsonl").rows()
    assert rows and all(r["status"] == "failed" for r in rows)
    assert all(r["error"].startswith("TimeBudgetError: the run took longer than its budget, train.max_minutes = 1e-05") for r in rows)
    assert {f["run_id"] for f in summary["failed"]} == {r["run_id"] for r in rows}
    assert "TimeBudgetError" in (out / "report.html").read_text()
    # The budget is not part of the fingerprint: without it, the failed runs run again.
    again = Study(tiny_config(tiny_family, seeds=1, fractions=[1.0], strategies=["scratch", "fine-tune"], train=slow), data=tiny_family)
    assert again.fingerprint == Study(cfg, data=tiny_family).fingerprint
    again.run(out, progress=False)
    latest = {r["run_id"]: r["status"] for r in ResultStore(out / "results.jsonl").rows()}
    assert set(latest.values()) == {"ok"}

"""A run's numbers are a function of the run alone: not of the runs before it in the
process, of ``--workers``, or of the study's other fractions and strategies."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

from polytask import Study
from polytask.data import TaskData, make_task_family
from polytask.study.store import ResultStore


def _scaled_family() -> dict[str, TaskData]:
    """Tabular tasks whose columns have very different scales, so standardization matters."""
    family = make_task_family(n_tasks=3, n_target=60, n_source=200, n_test=100, n_features=6, seed=3)
    scale = np.array([1e-3, 1.0, 10.0, 100.0, 1e3, 1e4], dtype=np.float32)
    return {n: TaskData(d.x_train * scale + 5, d.y_train, d.x_test * scale + 5, d.y_test) for n, d in family.items()}


def _tests(out) -> dict[str, float]:
    return {r["run_id"]: r["test"] for r in ResultStore(out / "results.jsonl").rows() if r["status"] == "ok"}


@pytest.mark.parametrize("strategy", ["feature-extraction", "fine-tune", "mtl", "scratch"])
def test_a_run_gives_the_same_numbers_alone_as_after_another_fraction(strategy, tmp_path):
    family = _scaled_family()
    both = Study(tiny_config(family, strategies=[strategy], fractions=[0.2, 1.0], seeds=1), data=family)
    both.run(out=tmp_path / "both", progress=False)
    alone = Study(tiny_config(family, strategies=[strategy], fractions=[1.0], seeds=1), data=family)
    alone.run(out=tmp_path / "alone", progress=False)
    run_id = f"target/{strategy}/1/seed0"
    assert _tests(tmp_path / "both")[run_id] == _tests(tmp_path / "alone")[run_id]


def test_numbers_do_not_depend_on_the_other_strategies_or_on_workers(tmp_path):
    family = _scaled_family()
    strategies = ["scratch", "feature-extraction", "fine-tune", "mtl"]
    cfg = tiny_config(family, strategies=strategies, fractions=[0.2, 1.0], seeds=2)
    Study(cfg, data=family).run(out=tmp_path / "serial", progress=False)
    Study(cfg, data=family).run(out=tmp_path / "pool", workers=2, progress=False)
    serial = _tests(tmp_path / "serial")
    assert serial == _tests(tmp_path / "pool")
    for strategy in strategies:
        Study(tiny_config(family, strategies=[strategy], fractions=[1.0, 0.2], seeds=2), data=family).run(out=tmp_path / strategy, progress=False)
        own = _tests(tmp_path / strategy)
        assert own == {k: v for k, v in serial.items() if f"/{strategy}/" in k}


def test_feature_cache_charges_a_hit_what_the_miss_cost_and_stays_bounded():
    import torch

    from polytask.strategies import FeatureCache

    cache = FeatureCache(max_bytes=3 * 400)
    calls = []

    def compute(i):
        calls.append(i)
        return torch.full((10, 10), float(i))  # 400 bytes

    first = cache.get("a", lambda: compute(0))
    again = cache.get("a", lambda: compute(1))
    assert calls == [0] and again[0] is first[0] and again[1] == first[1] > 0
    for i in range(2, 6):
        cache.get(i, lambda i=i: compute(i))
    assert len(cache) == 3 and "a" not in cache._entries  # least recently used dropped first


def _two_target_family():
    fam = _scaled_family()
    return {"a": fam["target"], "b": fam["source1"], "src": fam["source2"]}


def _two_target_config(**extra):
    cfg = tiny_config(_two_target_family(), **extra)
    cfg["tasks"] = {"a": {}, "b": {}, "src": {"role": "source"}}
    return cfg


@pytest.mark.parametrize("order_seed", [0, 1])
def test_jobs_in_any_order_in_one_process_give_the_same_rows(tmp_path, order_seed):
    family = _two_target_family()
    cfg = _two_target_config(strategies=["scratch", "feature-extraction", "fine-tune", "mtl", "aa-control"], fractions=[0.3, 1.0], seeds=2)
    planned = Study(cfg, data=family)
    jobs = planned.pending_jobs(ResultStore(tmp_path / "none.jsonl"))
    reference = {r["run_id"]: r["test"] for j in jobs for r in planned.execute_job(tmp_path / "planned", j)}
    shuffled = Study(cfg, data=family)
    order = np.random.default_rng(order_seed).permutation(len(jobs))
    again = {r["run_id"]: r["test"] for i in order for r in shuffled.execute_job(tmp_path / "shuffled", jobs[i])}
    assert again == reference


def test_two_targets_a_fraction_gives_the_same_numbers_with_or_without_the_others(tmp_path):
    family = _two_target_family()
    strategies = ["scratch", "fine-tune", "mtl", "mtl-per-target"]
    Study(_two_target_config(strategies=strategies, fractions=[0.3, 1.0], seeds=1), data=family).run(out=tmp_path / "both", progress=False)
    Study(_two_target_config(strategies=strategies, fractions=[1.0], seeds=1), data=family).run(out=tmp_path / "one", progress=False)
    one = _tests(tmp_path / "one")
    assert one == {k: v for k, v in _tests(tmp_path / "both").items() if "/1/seed" in k}

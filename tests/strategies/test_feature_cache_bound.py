"""FeatureCache keeps at most ``max_bytes`` of features, dropping the least recently used
first, and a bound changes which features are computed again, never a run's numbers."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from polytask import Study
from polytask.data import make_task_family
from polytask.strategies import FeatureCache
from polytask.strategies.features import DEFAULT_MAX_BYTES, tensor_bytes
from polytask.study.store import ResultStore

ROW = 400  # bytes of one entry below: 100 float32


def _entry(i: int) -> torch.Tensor:
    return torch.full((10, 10), float(i))


def _fill(cache: FeatureCache, calls: list, key, i: int) -> tuple[torch.Tensor, float]:
    def compute():
        calls.append(key)
        return _entry(i)

    return cache.get(key, compute)


def test_default_bound_is_documented_and_none_is_unbounded():
    assert FeatureCache().max_bytes == DEFAULT_MAX_BYTES == 1 << 30
    cache = FeatureCache(max_bytes=None)
    for i in range(50):
        cache.get(i, lambda i=i: _entry(i))
    assert len(cache) == 50 and cache.nbytes == 50 * ROW and cache.evictions == 0
    with pytest.raises(ValueError, match="max_bytes"):
        FeatureCache(max_bytes=-1)


def test_bytes_are_element_size_times_elements():
    assert tensor_bytes(_entry(0)) == ROW
    assert tensor_bytes(torch.zeros(3, 5, dtype=torch.float64)) == 120
    assert tensor_bytes(torch.zeros(8, 8)[:2]) == 2 * 8 * 4  # a view counts its own elements


def test_least_recently_used_goes_first_and_a_hit_counts_as_a_use():
    cache, calls = FeatureCache(max_bytes=3 * ROW), []
    for key in "abc":
        _fill(cache, calls, key, 0)
    assert list(cache._entries) == ["a", "b", "c"]
    _fill(cache, calls, "a", 0)  # hit: a becomes the most recently used
    assert list(cache._entries) == ["b", "c", "a"] and calls == ["a", "b", "c"]
    _fill(cache, calls, "d", 0)  # b is the least recently used
    assert list(cache._entries) == ["c", "a", "d"] and "b" not in cache
    _fill(cache, calls, "c", 0)
    _fill(cache, calls, "e", 0)  # a, not c (just used)
    assert list(cache._entries) == ["d", "c", "e"]
    _fill(cache, calls, "b", 0)  # evicted earlier: computed again
    assert calls == ["a", "b", "c", "d", "e", "b"]
    assert (cache.hits, cache.misses, cache.evictions) == (2, 6, 3)


def test_a_hit_returns_the_same_tensor_and_the_seconds_the_miss_cost():
    cache, calls = FeatureCache(max_bytes=2 * ROW), []
    first = _fill(cache, calls, "k", 1)
    again = _fill(cache, calls, "k", 2)
    assert again[0] is first[0] and again[1] == first[1] > 0 and calls == ["k"]


@pytest.mark.parametrize("bound", [0, ROW - 1, ROW, 2 * ROW + 100, 5 * ROW])
def test_the_bound_is_never_passed_after_any_insertion(bound):
    cache = FeatureCache(max_bytes=bound)
    sizes = [1, 100, 25, 3, 100, 60, 7, 100, 1, 40]  # float32 elements
    for i, n in enumerate(sizes * 2):
        features, _ = cache.get(i % 13, lambda n=n: torch.ones(n))
        assert features.nelement() in sizes  # always returned, kept or not
        assert cache.nbytes == sum(tensor_bytes(f) for f, _ in cache._entries.values()) <= bound


def test_an_entry_larger_than_the_bound_is_returned_not_kept_and_evicts_nothing():
    cache, calls = FeatureCache(max_bytes=2 * ROW), []
    _fill(cache, calls, "a", 0)
    big = torch.ones(3 * ROW // 4)  # 3 * ROW bytes
    features, seconds = cache.get("big", lambda: big)
    assert features is big and seconds >= 0
    assert "big" not in cache and list(cache._entries) == ["a"] and cache.evictions == 0
    cache.get("big", lambda: big)
    assert (cache.hits, cache.misses) == (0, 3)  # a, then big twice: never kept, so never a hit


def test_the_entry_being_returned_survives_its_own_insertion():
    cache, calls = FeatureCache(max_bytes=ROW), []
    _fill(cache, calls, "a", 0)
    features, _ = _fill(cache, calls, "b", 1)  # exactly the bound: a goes, b stays
    assert list(cache._entries) == ["b"] and features[0, 0] == 1 and cache.nbytes == ROW


def _tests(out) -> dict[str, float]:
    return {r["run_id"]: r["test"] for r in ResultStore(out / "results.jsonl").rows() if r["status"] == "ok"}


def test_a_tiny_bound_recomputes_features_and_gives_the_same_numbers(tmp_path):
    # Running a study twice in one process: the second pass finds every feature in an
    # unbounded cache, while a cache too small for two splits recomputes them all.
    family = make_task_family(n_tasks=3, n_target=60, n_source=200, n_test=100, n_features=6, seed=0)
    cfg = tiny_config(family, strategies=["feature-extraction"], fractions=[0.5, 1.0], seeds=2)
    results, caches = {}, {}
    for name, bound in (("unbounded", None), ("tiny", 100 * 16 * 4)):  # one test split's features
        study = Study(cfg, data=family)
        study._feature_cache = caches[name] = FeatureCache(max_bytes=bound)
        for rerun in ("first", "second"):
            study.run(out=tmp_path / name / rerun, progress=False)
            results[name, rerun] = _tests(tmp_path / name / rerun)
    unbounded, tiny = caches["unbounded"], caches["tiny"]
    assert unbounded.evictions == 0 and unbounded.hits == unbounded.misses > 0
    assert tiny.evictions > 0 and tiny.hits < unbounded.hits and tiny.nbytes <= tiny.max_bytes
    reference = results["unbounded", "first"]
    assert len(reference) == 4 and all(r == reference for r in results.values())

"""Mergeable statistics: exact merging across shards, file round trips, the cache key, torch.distributed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctbench.stats import (
    FeatureSetStats,
    FeatureStats,
    GroupedStats,
    cache_path,
    import_stats,
    load_cached,
    store_cached,
)


def test_mean_and_cov_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 12)) * 3 + 5
    s = FeatureStats(12)
    s.update(x[:123])
    s.update(torch.from_numpy(x[123:]))  # a float64 tensor goes in as it is
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.cov, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)
    assert s.count == 500


def test_merge_of_shards_equals_single_pass():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6))
    whole = FeatureStats(6)
    whole.update(x)
    a, b, c = FeatureStats(6), FeatureStats(6), FeatureStats(6)
    a.update(x[:10])
    b.update(x[10:200])
    c.update(x[200:])
    merged = c.merge(a).merge(b)
    assert merged.count == whole.count
    np.testing.assert_allclose(merged.total, whole.total, rtol=1e-14)
    np.testing.assert_allclose(merged.outer, whole.outer, rtol=1e-14)


def test_wrong_feature_shape_is_an_error():
    with pytest.raises(ValueError, match=r"\(M, 4\)"):
        FeatureStats(4).update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        _ = FeatureStats(4).cov


def test_grouped_stats_assign_by_index_and_leave_one_out():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3))
    g = GroupedStats(3, 4)
    g.update(x, np.arange(100, 140))
    assert [s.count for s in g.groups] == [10, 10, 10, 10]
    np.testing.assert_allclose(g.groups[1].mean, x[np.arange(100, 140) % 4 == 1].mean(0))
    left = g.total().subtract(g.groups[1])
    np.testing.assert_allclose(left.cov, np.cov(x[np.arange(100, 140) % 4 != 1], rowvar=False), atol=1e-12)


def _set(x: np.ndarray, idx: np.ndarray, prov: dict) -> FeatureSetStats:
    g = GroupedStats(x.shape[1], 3)
    g.update(x, idx)
    return FeatureSetStats({"video": g}, len(idx), prov)


def test_feature_set_merge_is_sharding_invariant_and_checks_provenance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 5))
    idx = np.arange(30)
    prov = {"metric": "fvd", "weights_sha256": "ab"}
    whole = _set(x, idx, prov)
    merged = _set(x[:7], idx[:7], prov).merge(_set(x[7:], idx[7:], prov))
    assert merged.n_volumes == 30
    for a, b in zip(whole.streams["video"].groups, merged.streams["video"].groups, strict=True):
        assert a.count == b.count
        np.testing.assert_allclose(a.outer, b.outer, rtol=1e-14)
    with pytest.raises(ValueError, match="different provenance"):
        whole.merge(_set(x, idx, {"metric": "fvd", "weights_sha256": "cd"}))


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    s = _set(rng.normal(size=(20, 4)), np.arange(20), {"metric": "fvd", "options": {"a": 1}})
    path = s.save(tmp_path / "s.npz")
    back = FeatureSetStats.load(path)
    assert back.provenance == s.provenance and back.n_volumes == 20
    for a, b in zip(s.streams["video"].groups, back.streams["video"].groups, strict=True):
        assert a.count == b.count
        np.testing.assert_array_equal(a.outer, b.outer)
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_load_rejects_foreign_file(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(ValueError, match="bad.npz: not a ctbench statistics file"):
        FeatureSetStats.load(bad)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(ValueError, match="truncated.npz: not a ctbench statistics file"):
        FeatureSetStats.load(truncated)


FIELDS = {
    "protocol": {"name": "flare22-v1", "version": "1.0.0"},
    "manifest_sha256": "m1",
    "split": "test",
    "extractor": "inception-v3-compat",
    "weights_sha256": "w1",
    "preprocessing": "p1",
    "metric": "fid",
    "metric_version": "1",
    "options": {"slice_step": 1},
}


@pytest.mark.parametrize(
    "field,value",
    [
        ("protocol", {"name": "flare22-v1", "version": "1.0.1"}),
        ("manifest_sha256", "m2"),
        ("split", "val"),
        ("extractor", "other"),
        ("weights_sha256", "w2"),
        ("preprocessing", "p2"),
        ("metric_version", "2"),
        ("options", {"slice_step": 2}),
    ],
)
def test_cache_key_changes_with_every_field(field, value):
    assert cache_path("fid", {**FIELDS, field: value}) != cache_path("fid", FIELDS)
    assert cache_path("fid", dict(reversed(list(FIELDS.items())))) == cache_path("fid", FIELDS)


def test_cache_store_load_and_import(tmp_path, private_cache):
    rng = np.random.default_rng(5)
    s = _set(rng.normal(size=(12, 4)), np.arange(12), {"metric": "fid", "cache_fields": FIELDS})
    path = store_cached("fid", s)
    assert path == cache_path("fid", FIELDS) and path.is_relative_to(private_cache)
    assert path.with_suffix(".json").is_file()
    assert load_cached("fid", FIELDS).n_volumes == 12
    assert load_cached("fid", {**FIELDS, "split": "val"}) is None
    # export → delete → import puts it back under the same key
    exported = tmp_path / "ref.npz"
    exported.write_bytes(path.read_bytes())
    path.unlink()
    metric, imported = import_stats(exported)
    assert (metric, imported) == ("fid", path)
    assert load_cached("fid", FIELDS) is not None


def test_cache_never_serves_a_file_whose_fields_differ(private_cache):
    """A file placed under a key whose stored fields do not match is ignored."""
    s = _set(np.eye(4), np.arange(4), {"metric": "fid", "cache_fields": {**FIELDS, "split": "val"}})
    s.save(cache_path("fid", FIELDS))
    assert load_cached("fid", FIELDS) is None


def _all_reduce_worker(rank: int, world: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    rng = np.random.default_rng(10)
    x = rng.normal(size=(40, 5))
    idx = np.arange(40)
    mine = idx % world == rank
    s = _set(x[mine], idx[mine], {"metric": "fvd"})
    s.all_reduce()
    if rank == 0:
        s.save(out)
    dist.destroy_process_group()


def test_all_reduce_over_two_processes_equals_single_pass(tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "reduced.npz"
    mp.start_processes(_all_reduce_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, start_method="fork")
    reduced = FeatureSetStats.load(out)
    rng = np.random.default_rng(10)
    whole = _set(rng.normal(size=(40, 5)), np.arange(40), {"metric": "fvd"})
    assert reduced.n_volumes == 40
    for a, b in zip(whole.streams["video"].groups, reduced.streams["video"].groups, strict=True):
        assert a.count == b.count
        np.testing.assert_allclose(a.outer, b.outer, rtol=1e-13)

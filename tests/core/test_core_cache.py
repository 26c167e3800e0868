"""Keyed .npz cache: round trip, refusal of entries made from other fields, misses on damaged files."""

import json

import numpy as np
import pytest

from ctbench.core.cache import FIELDS_ARRAY, KeyedCache, cache_root, read_npz, write_npz
from ctbench.core.hashing import json_sha256

FIELDS = {"manifest_sha256": "m1", "split": "train", "version": "1", "ids": ["a", "b"]}


def test_round_trip_with_fields_inside_and_beside(tmp_path):
    cache = KeyedCache(tmp_path / "idx")
    assert cache.load(FIELDS) is None
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = cache.store(FIELDS, {"features": x})
    assert path == tmp_path / "idx" / f"{json_sha256(FIELDS)}.npz"
    got = cache.load(dict(reversed(list(FIELDS.items()))))  # same fields, other order: same entry
    assert set(got) == {"features"} and np.array_equal(got["features"], x) and got["features"].dtype == np.float32
    assert json.loads(path.with_suffix(".json").read_text()) == {"key": path.stem, "fields": FIELDS}
    assert json.loads(str(np.load(path)[FIELDS_ARRAY])) == FIELDS


def test_stale_key_is_refused(tmp_path):
    """A file put under the key of other fields (copied, renamed, or fields changed) is a miss."""
    cache = KeyedCache(tmp_path)
    stale = cache.store({**FIELDS, "version": "0"}, {"features": np.zeros(3)})
    stale.rename(cache.path(FIELDS))
    assert cache.load(FIELDS) is None
    write_npz(cache.path(FIELDS), {"features": np.zeros(3)})  # no fields inside at all
    assert cache.load(FIELDS) is None


def test_damaged_entry_is_a_miss_and_is_overwritten(tmp_path):
    cache = KeyedCache(tmp_path)
    path = cache.store(FIELDS, {"x": np.ones(4)})
    path.write_bytes(path.read_bytes()[:40])
    assert cache.load(FIELDS) is None
    cache.store(FIELDS, {"x": np.ones(4)})
    assert np.array_equal(cache.load(FIELDS)["x"], np.ones(4))


def test_tagged_variant_and_discard(tmp_path):
    cache = KeyedCache(tmp_path)
    part = cache.store(FIELDS, {"x": np.ones(1)}, tag="partial")
    assert part.name == f"{cache.key(FIELDS)}.partial.npz" and cache.load(FIELDS) is None
    assert cache.load(FIELDS, tag="partial") is not None
    cache.discard(FIELDS, tag="partial")
    assert list(tmp_path.iterdir()) == []


def test_plain_npz_round_trip_and_reserved_name(tmp_path):
    path = write_npz(tmp_path / "a.npz", {"x": np.arange(3)}, {"k": 1})
    assert list(read_npz(path)) == ["x"]
    with pytest.raises(ValueError, match="reserved"):
        write_npz(tmp_path / "b.npz", {FIELDS_ARRAY: np.zeros(1)})


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CTBENCH_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("CTBENCH_CACHE")
    assert cache_root().parts[-2:] == (".cache", "ctbench")

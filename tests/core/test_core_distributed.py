"""Distributed helpers: sharding covers range(n) exactly; outside a process group the world is one rank."""

import pytest

from ctbench.core.distributed import gather_object, init_distributed, local_rank, rank_and_world, shard


@pytest.mark.parametrize("n", [0, 1, 5, 7, 64])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_are_contiguous_disjoint_and_cover_range(n, world):
    shares = [shard(n, r, world) for r in range(world)]
    assert [i for s in shares for i in s] == list(range(n))
    assert all(s.step == 1 for s in shares)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert sorted(map(len, shares), reverse=True) == list(map(len, shares))  # the first ranks get the extra ones


def test_shard_refuses_a_rank_outside_the_world():
    with pytest.raises(ValueError, match="rank"):
        shard(4, 2, 2)


def test_single_process_is_a_world_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert rank_and_world() == (0, 1) == init_distributed()
    assert gather_object({"a": 1}) == [{"a": 1}]
    assert local_rank() == 0

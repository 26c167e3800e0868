"""The deterministic split by case id."""

from __future__ import annotations

import hashlib

from ctbench.data.split import assign_splits, hash_split, split_key

FRACTIONS = (0.8, 0.1, 0.1)


def test_key_is_sha256_of_the_id():
    digest = hashlib.sha256(b"ctbench-split:FLARE22_Tr_0001").digest()
    assert split_key("FLARE22_Tr_0001") == int.from_bytes(digest[:8], "big") / 2**64
    assert 0.0 <= split_key("x") < 1.0


def test_large_sets_follow_the_hash_and_the_fractions():
    ids = [f"FLARE22_Tr_{i:04d}" for i in range(1, 2001)]
    splits = assign_splits(ids, FRACTIONS)
    assert all(splits[i] == hash_split(i, FRACTIONS) for i in ids)  # no fix-up needed at this size
    counts = {s: sum(v == s for v in splits.values()) for s in ("train", "val", "test")}
    assert 1540 < counts["train"] < 1660 and 160 < counts["val"] < 240 and 160 < counts["test"] < 240
    # adding cases never moves an existing one
    more = assign_splits([*ids, *(f"Case_{i:05d}" for i in range(500))], FRACTIONS)
    assert all(more[i] == splits[i] for i in ids)
    assert assign_splits(reversed(ids), FRACTIONS) == splits  # order does not matter


def test_small_sets_get_a_val_and_a_test_case():
    ids = [f"Case_{i:05d}" for i in range(1, 9)]
    plain = {i: hash_split(i, FRACTIONS) for i in ids}
    splits = assign_splits(ids, FRACTIONS)
    assert sorted(splits.values()).count("val") >= 1 and sorted(splits.values()).count("test") >= 1
    moved = [i for i in ids if splits[i] != plain[i]]
    assert all(plain[i] == "train" for i in moved)  # only train cases move
    # the moved ones are the train cases with the largest keys
    train_by_key = sorted((i for i in ids if plain[i] == "train"), key=split_key)
    assert sorted(moved, key=split_key) == train_by_key[len(train_by_key) - len(moved) :]
    assert set(assign_splits(["a"], FRACTIONS).values()) <= {"train", "val", "test"}

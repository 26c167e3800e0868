"""The deterministic train/val/test split, decided by the case id alone.

Each case id is hashed (SHA-256 of ``"ctbench-split:" + id``) to a number ``u`` in [0, 1); with fractions
``(f_train, f_val, f_test)`` a case is train if ``u < f_train``, val if ``u < f_train + f_val``, else test.
Adding or removing other cases never moves a case. One exception, for small sets only: if the hash
leaves val or test empty while train has at least two cases, the train case(s) with the largest ``u``
are moved to the empty split(s) (test first, then val). With 80/10/10 fractions this only happens for
sets of a few dozen cases or fewer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

SPLITS: tuple[str, str, str] = ("train", "val", "test")


def split_key(case_id: str) -> float:
    """The case's position ``u`` in [0, 1), from the first 8 bytes of SHA-256 of its id."""
    digest = hashlib.sha256(f"ctbench-split:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_split(case_id: str, fractions: tuple[float, float, float]) -> str:
    """The split a case gets from its hash alone (no small-set fix-up)."""
    u = split_key(case_id)
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "val"
    return "test"


def assign_splits(case_ids: Iterable[str], fractions: tuple[float, float, float]) -> dict[str, str]:
    """Split every case id; see the module docstring for the rule. Returns ``{id: split}``."""
    ids = sorted(set(case_ids))
    out = {i: hash_split(i, fractions) for i in ids}
    for empty in ("test", "val"):
        train = sorted((i for i in ids if out[i] == "train"), key=split_key)
        if len(train) >= 2 and not any(s == empty for s in out.values()):
            out[train[-1]] = empty
    return out

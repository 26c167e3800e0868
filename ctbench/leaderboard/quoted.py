"""Published figures shown beside ctbench's values: read from ``quoted.json`` in this package.

A quoted entry is never ranked, has no Δ and is not drawn in the plots: its values were not computed by
ctbench, with unknown N, reference set and code (the entry lists what is unknown). It appears in every
leaderboard group whose columns share at least one of its keys.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

MARK = "quoted, not computed by ctbench — not ranked"
"""How every output labels a quoted row."""


@dataclass(frozen=True)
class Quoted:
    """One published set of figures: ``values`` maps leaderboard keys to the numbers as printed."""

    label: str
    source: str
    citation: str
    setting: str
    values: dict[str, float]
    unknown: tuple[str, ...]

    def value(self, key: str) -> float | None:
        return self.values.get(key)


@functools.cache
def quoted_entries() -> tuple[Quoted, ...]:
    """Every entry of ``ctbench/leaderboard/quoted.json``."""
    data = json.loads(resources.files("ctbench.leaderboard").joinpath("quoted.json").read_text(encoding="utf-8"))
    return tuple(
        Quoted(
            e["label"], e["source"], e["citation"], e["setting"],
            {k: float(v) for k, v in e["values"].items()}, tuple(e["unknown"]),
        )  # fmt: skip
        for e in data["entries"]
    )


def quoted_for(columns: list[str]) -> list[Quoted]:
    """The entries that share at least one key with a group's ``columns``."""
    return [q for q in quoted_entries() if set(q.values) & set(columns)]

"""What the generator and metric registries share: finding entry points, naming their package, unknown names."""

from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points

from ctbench.core.errors import CtbenchError


class UnknownNameError(CtbenchError, KeyError):
    """An unknown generator, variant or metric; the message lists the closest known names."""

    def __init__(self, name: str, known: list[str], kind: str = "generator"):
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Known: {', '.join(known) or 'none'}")

    def __str__(self) -> str:
        return str(self.args[0])


def group_entry_points(group: str) -> dict[str, EntryPoint]:
    """The installed entry points of ``group`` by name (the first one found wins for a duplicated name)."""
    out: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        out.setdefault(ep.name, ep)
    return out


def distribution_of(ep: EntryPoint) -> tuple[str | None, str | None]:
    """(package name, version) of the distribution that declares ``ep``; (None, None) when unknown."""
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"], dist.version) if dist is not None else (None, None)

"""What the leaderboard knows about a column (a metric key), read from the Metric contract's :class:`Key`.

A key no installed metric declares (a record made with a metric plugin that is not installed here) is shown
after the known ones, with no direction, and never ranks. Each metric's first declared key is its headline:
the boards show headline columns first and the rest behind a details toggle.
"""

from __future__ import annotations

import functools

from ctbench.metrics.contract import Key
from ctbench.metrics.registry import METRICS


@functools.cache
def _keys() -> dict[str, Key]:
    return {k.name: k for k in METRICS.all_keys()}


def key_info(key: str) -> Key:
    """The declaration of ``key``, or a plain one (no direction, no unit) for an unknown key."""
    return _keys().get(key, Key(key))


def column_order(present: set[str]) -> list[str]:
    """``present`` keys in registry order (headline keys first), unknown keys after, sorted."""
    known = [k for k in _keys() if k in present]
    return known + sorted(present - set(known))


@functools.cache
def headline_keys() -> frozenset[str]:
    """The first declared key of every usable metric (``fid_mean``, ``fvd``, ``ms_ssim``, ...)."""
    return frozenset(st.cls.keys[0].name for st in METRICS.statuses() if st.cls is not None and st.cls.keys)


def glossary(key: str) -> str:
    """One line on the column ``key``: direction, units and the contract's description."""
    info = key_info(key)
    if info.direction in ("lower", "higher"):
        better = f"{arrow(key)} {info.direction} is better"
    elif info.real_of:
        better = f"real-side reference for `{info.real_of}`"
    else:
        partner = next((k.name for k in _keys().values() if k.real_of == key), None)
        better = f"read against `{partner}`" if partner else "no better direction"
    unit = f", in {info.units}" if info.units else ""
    what = info.description or "not declared by any metric installed here"
    return f"`{key}` ({better}{unit}): {what}"


def rank_keys() -> list[str]:
    """Keys that may rank a group, by priority (``Key.rank``)."""
    return [k.name for k in sorted((k for k in _keys().values() if k.rank is not None), key=lambda k: k.rank or 0)]


def n_independent(key: str) -> bool:
    """Whether records at different N may be compared on ``key`` (``Key.n_independent``)."""
    return key_info(key).n_independent


def lower_is_better(key: str) -> bool:
    """Whether a smaller value of the column ``key`` is better (``Key.direction``)."""
    return key_info(key).direction == "lower"


def arrow(key: str) -> str:
    """``↓`` for lower-is-better keys, ``↑`` for higher-is-better, empty otherwise."""
    return {"lower": "↓", "higher": "↑"}.get(key_info(key).direction, "")


def real_partner(key: str) -> str | None:
    """For a key that describes the real volumes (``ms_ssim_real``), the generated-side key it goes with."""
    return key_info(key).real_of


def axis_label(key: str) -> str:
    """Plot axis label: the key, its unit, and which direction is better."""
    info = key_info(key)
    unit = f" ({info.units})" if info.units else ""
    better = {"lower": " — lower is better", "higher": " — higher is better"}.get(info.direction, "")
    return f"{key}{unit}{better}"

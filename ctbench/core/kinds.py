"""Whether a value a user gave (YAML, ``--set``, ``--metric-option``) has the kind of the default it replaces."""

from __future__ import annotations

from typing import Any


def kind_mismatch(default: Any, value: Any) -> str | None:
    """What ``value`` must be to have ``default``'s kind ("a whole number", "a number", "true or false",
    "a string", "a list"), or None when it has it; a default of another kind (None, say) accepts anything."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if number(value) and isinstance(value, int) else "a whole number"
    if isinstance(default, float):
        return None if number(value) else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    if isinstance(default, list):
        return None if isinstance(value, list) else "a list"
    return None

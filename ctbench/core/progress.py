"""One place that makes progress bars: tqdm on a terminal, silent in logs.

tqdm writes carriage-return updates; in a redirected log (``make demo > log``, CI) they pile up into long
lines. ``disable=None`` is tqdm's automatic mode: the bar shows only when its stream (stderr) is a terminal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``), shown only on a terminal.

    ``enabled=False`` turns it off everywhere (e.g. on ranks other than 0); other arguments go to tqdm.
    """
    return tqdm(iterable, disable=None if enabled else True, **kwargs)

"""Errors that cross layers: raised low (weights, extractors, data), caught high (CLI, evaluation).

Every error ctbench raises for a user to read derives from :class:`CtbenchError`; its message alone says
what went wrong and how to fix it, so a front end can print it as one line without a traceback.
"""

from __future__ import annotations


class CtbenchError(Exception):
    """Base of ctbench's errors whose message is written for the user (what, where, and the fix)."""


class MetricUnavailable(CtbenchError, RuntimeError):
    """A metric cannot run here (missing weights, missing TensorFlow, ...).

    Raised before any work is done. The message names what is missing, where ctbench looked, and
    the command(s) that fix it. A metric never reports a made-up value instead.
    """


def first_line(exc: BaseException) -> str:
    """The first sentence of the first line of ``exc``'s message (torch follows it with paragraphs of advice), or
    the exception's type name when the message is empty."""
    return (str(exc).split(". ")[0].splitlines() or [type(exc).__name__])[0]

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

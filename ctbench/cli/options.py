"""Option types and checks shared by several commands; imports only click (``--help`` stays fast).

Seeds: every command takes a non-negative integer (``--seed 0`` .. ``--seed 2**63-1``); a negative one is a
usage error at the command line, before any work.
"""

from __future__ import annotations

import os

import click

SEED = click.IntRange(min=0, max=2**63 - 1)
"""``--seed``: a non-negative integer; the same seed gives the same phantoms / samples."""

DEVICE_HELP = "cpu, cuda (alias gpu) or cuda:N; checked before any work."


def check_device(value: str, option: str = "--device") -> str:
    """``--device`` → the torch device string (``gpu`` → ``cuda``); an unusable device is one ``Error:`` line.

    Imports torch, so call it when the command runs, not at import.
    """
    name = value.strip().lower()
    name = "cuda" + name[3:] if name.startswith("gpu") else name
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise click.BadParameter(f"{value!r}: expected cpu, cuda (or gpu) or cuda:N", param_hint=option)
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            hidden = " (CUDA_VISIBLE_DEVICES is empty)" if os.environ.get("CUDA_VISIBLE_DEVICES") == "" else ""
            raise click.ClickException(f"{option} {value}: no CUDA device is available here{hidden}; use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise click.ClickException(
                f"{option} {value}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
            )
    return name

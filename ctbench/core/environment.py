"""Provenance of a run: interpreter, libraries, device and source revision (the ``env`` block of a record)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from ctbench import __version__

_REPO_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the ``ctbench`` package: a git checkout when running from source."""


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(_REPO_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state() -> tuple[str | None, bool | None]:
    """(commit hash, dirty?) of the source tree ctbench runs from; (None, None) outside a git checkout."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status) if status is not None else None)


def describe_device(device: torch.device | str) -> str:
    """Human name of a torch device, e.g. ``'cpu (x86_64)'`` or ``'cuda:0 (NVIDIA H100 80GB HBM3)'``."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"{device.type} ({platform.machine()})"


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The ``env`` block of a result record."""
    commit, dirty = git_state()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ctbench": __version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": describe_device(device),
        "git_commit": commit,
        "git_dirty": dirty,
    }

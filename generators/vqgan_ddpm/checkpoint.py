"""The run checkpoint: one file, ``RUN_DIR/checkpoint.pt``, holding everything sampling and resuming need.

It holds the resolved config, the variant, the training augmentation, the ctbench version, each stage's
step, model, optimiser (and EMA) states, the latent scale and the RNG states. Written atomically (a
temporary file renamed), so an interrupt leaves the previous one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctbench import __version__
from ctbench.core.atomic import atomic_path
from ctbench.core.errors import first_line

from .variants import flatten_config

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "ctbench.vqgan-ddpm/1"


def _rng_state() -> dict[str, Any]:
    """The torch, numpy and python global RNG states."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`_rng_state` captured."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus RNG states and the ctbench version) to ``path`` atomically."""
    state = {**state, "rng": _rng_state(), "ctbench_version": __version__, "format": CHECKPOINT_FORMAT}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run checkpoint; raises ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {first_line(exc)})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a vqgan-ddpm checkpoint (expected format {CHECKPOINT_FORMAT})")
    return state


def check_resume_config(saved: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """A resumed run may change only step counts, checkpoint/log intervals, sampling and precision settings.

    Raises ``ValueError`` naming the file and the keys; a run trained with flips resumed without them gets
    its own message (the default changed to no flips).
    """
    a, b = flatten_config(saved), flatten_config(config)
    flips = a.get("data.flip_probability", 0.0)
    if flips and not b.get("data.flip_probability", 0.0):
        raise ValueError(
            f"{path}: trained with left-right flips (data.flip_probability {flips}) but this config trains without "
            f"them; resume it as vqgan-ddpm@flip or with data.flip_probability: {flips}"
        )
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    allowed = ("checkpoint.", "sampling.", "bf16.", "channels_last.", "cpu_threads")
    bad = [k for k in changed if not (k.startswith(allowed) or k.endswith("train.steps"))]
    if bad:
        raise ValueError(f"{path}: the config differs from the checkpoint's in {', '.join(bad)}; resume needs the same")

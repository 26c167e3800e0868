"""Reading a ``torch.save`` file of tensors (network weights) without running its code, with a one-line error."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ctbench.core.errors import first_line


def load_tensor_file(path: str | Path, what: str, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; ``ValueError`` ``"PATH: not WHAT (why)"`` with a one-line
    reason when the file is no such file (a training checkpoint that pickles other objects, text, a truncated
    file). ``mmap`` maps the tensors instead of reading them (zip-format files only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        why = "it pickles Python objects besides tensors (a training checkpoint?), or is no torch.save file"
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        plain = mmap and Path(path).is_file() and not zipfile.is_zipfile(path)
        why = "no torch.save file" if plain else first_line(exc)
    raise ValueError(f"{path}: not {what} ({why})")

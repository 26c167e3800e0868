"""Generators that need no training; they anchor the scale of every metric.

* ``real-holdout``: returns real held-out volumes (the ``val`` split by default), each at most once — the floor
  a generator aims at;
* ``noise``: i.i.d. Gaussian voxels clipped to [-1, 1] — a trivially bad, maximally diverse generator;
* ``mean-volume``: the voxel-wise mean of the training volumes, the same for every sample — bad, no diversity.

They register through the ``ctbench.generators`` entry points in ctbench's ``pyproject.toml``, like any plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ctbench.api import Generator, GeneratorInfo, LoadContext
from ctbench.core.kinds import kind_mismatch
from ctbench.core.progress import progress_bar
from ctbench.protocol import Protocol
from ctbench.seeding import sample_generator, sample_seed

VERSION = "1"


def _split_cases(context: LoadContext, name: str, split: str) -> list:
    """The prepared cases of ``split`` in the folder given by ``context``; errors name the generator and folder."""
    from ctbench.data.prepared import cases

    if context.data_dir is None:
        raise ValueError(f"generator {name!r} reads real volumes: pass a prepared folder (--data)")
    found = cases(Path(context.data_dir), split)
    if not found:
        raise ValueError(f"generator {name!r}: split {split!r} of {context.data_dir} is empty")
    return found


SPLITS = ("train", "val", "test")


class _Baseline(Generator):
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    """Config keys whose value must be one of a few names (``split``)."""

    def __init__(self, variant: str, config: dict[str, Any], overrides: dict[str, Any], protocol: Protocol):
        self.variant = variant
        self.config = config
        self.overrides = overrides
        self.protocol = protocol
        """The load context's protocol: samples are ``(n, *protocol.tensor_shape)``."""

    @classmethod
    def load(
        cls,
        checkpoint: Path | None,
        *,
        variant: str | None = None,
        overrides: dict[str, Any] | None = None,
        context: LoadContext | None = None,
    ) -> _Baseline:
        """No checkpoint: the resolved config, then :meth:`_setup` reads whatever real data the baseline needs."""
        if checkpoint is not None:
            raise ValueError(f"generator {cls.name!r} needs no checkpoint (it is not trained), got {checkpoint}")
        variant = variant or cls.default_variant()
        context = context or LoadContext()
        cls._check_overrides(overrides or {})
        gen = cls(variant, cls.resolve_config(variant, overrides), overrides or {}, context.protocol)
        gen._setup(context)
        return gen

    @classmethod
    def _check_overrides(cls, overrides: dict[str, Any]) -> None:
        """``ValueError`` naming the key (as ``--set KEY=VALUE``) for a key the config lacks or a value of the wrong
        kind: a number for a number, one of :attr:`choices` for a name."""
        defaults = cls.default_config()
        for key, value in overrides.items():
            if key not in defaults:
                raise ValueError(
                    f"--set {key}={value}: generator {cls.name!r} has no config key {key!r}; known: "
                    + ", ".join(defaults)
                )
            if key in cls.choices:
                if value not in cls.choices[key]:
                    raise ValueError(f"--set {key}={value}: must be one of {', '.join(cls.choices[key])}")
            elif wanted := kind_mismatch(defaults[key], value):
                raise ValueError(f"--set {key}={value}: must be {wanted}")

    def _setup(self, context: LoadContext) -> None:
        """Read real volumes at load time (the default reads none)."""

    def info(self) -> GeneratorInfo:
        return GeneratorInfo(self.name, self.variant, VERSION, self.config, parameters=0, overrides=self.overrides)


class RealHoldout(_Baseline):
    """Real volumes of a held-out split, in a seeded order: sample i is volume ``perm_seed[i]``.

    A volume is never repeated (a repeat would shrink the covariance and tie the jackknife groups together):
    asking for a sample index at or beyond the split's size is a ``ValueError`` naming both numbers.
    """

    name = "real-holdout"
    choices = {"split": SPLITS}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"split": "val"}

    @classmethod
    def variants(cls) -> dict[str, dict[str, Any]]:
        return {"test": {"split": "test"}, "train": {"split": "train"}}

    def _setup(self, context: LoadContext) -> None:
        self.cases = _split_cases(context, self.name, self.config["split"])

    def sample(self, n: int, seed: int, *, offset: int = 0, batch_size: int | None = None) -> torch.Tensor:
        from ctbench.data.prepared import read_volume

        count = len(self.cases)
        if offset + n > count:
            raise ValueError(
                f"generator {self.name!r}: at least {offset + n} samples asked for (sample indices up to "
                f"{offset + n - 1}), but split {self.config['split']!r} holds {count} volumes and none is "
                f"repeated; use --n {count} or fewer"
            )
        order = torch.randperm(count, generator=torch.Generator().manual_seed(sample_seed(seed, -1)))
        picks = [self.cases[int(order[i])] for i in range(offset, offset + n)]
        return torch.from_numpy(np.stack([read_volume(c.path) for c in picks]))[:, None]


class GaussianNoise(_Baseline):
    """Voxels ``clip(mean + std · N(0, 1), -1, 1)`` drawn from sample i's own stream."""

    name = "noise"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"mean": 0.0, "std": 0.5}

    @classmethod
    def variants(cls) -> dict[str, dict[str, Any]]:
        return {"wide": {"std": 1.0}}

    def sample(self, n: int, seed: int, *, offset: int = 0, batch_size: int | None = None) -> torch.Tensor:
        shape = self.protocol.tensor_shape
        out = torch.empty((n, *shape))
        for k, i in enumerate(range(offset, offset + n)):
            out[k] = torch.randn(shape, generator=sample_generator(seed, i)) * self.config["std"] + self.config["mean"]
        return out.clamp_(-1.0, 1.0)


class MeanVolume(_Baseline):
    """The voxel-wise mean of the training volumes, returned for every sample (ignores the seed)."""

    name = "mean-volume"
    choices = {"split": SPLITS}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"split": "train"}

    def _setup(self, context: LoadContext) -> None:
        from ctbench.data.prepared import read_volume

        train = _split_cases(context, self.name, self.config["split"])
        total = np.zeros(self.protocol.tensor_shape[1:], dtype=np.float64)
        for case in progress_bar(train, desc="mean-volume: averaging", unit="vol", leave=False):
            total += read_volume(case.path)
        self.mean = torch.from_numpy((total / len(train)).astype(np.float32))[None]

    def sample(self, n: int, seed: int, *, offset: int = 0, batch_size: int | None = None) -> torch.Tensor:
        return self.mean.expand(n, *self.mean.shape).clone()

"""The generator interface a plugin implements: :class:`Generator`, what it says of itself (:class:`GeneratorInfo`)
and what it is given to build itself (:class:`LoadContext`), plus the config helpers every plugin uses."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ctbench.core.hashing import json_sha256
from ctbench.core.plugins import UnknownNameError
from ctbench.protocol import DEFAULT_PROTOCOL, Protocol

if TYPE_CHECKING:
    from importlib.abc import Traversable  # the 3.10 home of the type (the oldest Python supported)


@dataclass
class GeneratorInfo:
    """What a loaded generator says about itself; written into every result record."""

    name: str
    variant: str
    version: str
    config: dict[str, Any]
    parameters: int
    overrides: dict[str, Any] = field(default_factory=dict)
    checkpoint_sha256: str | None = None
    plugin_package: str | None = None
    plugin_version: str | None = None

    @property
    def config_hash(self) -> str:
        """SHA-256 of the resolved config as canonical JSON."""
        return config_hash(self.config)


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 (hex) of a config as canonical JSON (sorted keys)."""
    return json_sha256(config)


def deep_update(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``overrides`` merged in recursively (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class LoadContext:
    """Everything a plugin may need to build itself, besides its checkpoint and config."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data_dir: Path | None = None
    """A prepared folder (``ctbench data prepare`` output), for generators that read real data."""
    protocol: Protocol = DEFAULT_PROTOCOL
    """The prepared folder's protocol (its manifest's); ``sample()`` returns volumes of ``protocol.tensor_shape``."""


class Generator(ABC):
    """A generator of CT volumes, built from a checkpoint and a config.

    Subclasses set ``name`` and implement :meth:`load`, :meth:`sample` and :meth:`info`; ``trainable``
    ones also :meth:`train` and :meth:`checkpoint_path`. Variants (``NAME@VARIANT``) are the default config
    plus the overrides in :meth:`variants`. :func:`check_plugin` states the whole contract.
    """

    name: ClassVar[str]
    trainable: ClassVar[bool] = False
    """True for generators that implement ``ctbench train NAME``."""

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """The base config every variant starts from."""
        return {}

    @classmethod
    def variants(cls) -> dict[str, dict[str, Any]]:
        """Registered variants: name -> overrides of :meth:`default_config`."""
        return {}

    @classmethod
    def default_variant(cls) -> str:
        """The variant used when none is named."""
        return "default"

    @classmethod
    def config_files(cls) -> dict[str, Traversable]:
        """Config files shipped with the plugin, by name (``ctbench train NAME --config CONFIG_NAME``).

        Each is YAML of overrides of :meth:`default_config` and may set ``variant:``; read them with
        :mod:`importlib.resources` so that they are found in an installed wheel too.
        """
        return {}

    @classmethod
    def resolve_config(cls, variant: str | None = None, overrides: dict[str, Any] | None = None) -> dict:
        """Default config, then the variant's overrides, then the caller's overrides."""
        variant = variant or cls.default_variant()
        known = cls.variants()
        if variant != "default" and variant not in known:
            raise UnknownNameError(f"{cls.name}@{variant}", [f"{cls.name}@{v}" for v in ["default", *known]], "variant")
        config = deep_update(cls.default_config(), known.get(variant, {}))
        return deep_update(config, overrides or {})

    @classmethod
    @abstractmethod
    def load(
        cls,
        checkpoint: Path | None,
        *,
        variant: str | None = None,
        overrides: dict[str, Any] | None = None,
        context: LoadContext | None = None,
    ) -> Generator:
        """Build a ready-to-sample generator; a checkpoint carries its own resolved config."""

    @classmethod
    def train(
        cls,
        config: dict[str, Any],
        data: Path,
        out_dir: Path,
        *,
        stage: str | None = None,
        resume: bool = False,
        variant: str | None = None,
    ) -> Path:
        """``ctbench train NAME``: train from a resolved config into ``out_dir``; only ``trainable`` plugins.

        ``stage`` is plugin-specific (None: everything). Returns the checkpoint that :meth:`load` takes.
        """
        raise NotImplementedError(f"generator {cls.name!r} is not trainable")

    @classmethod
    def checkpoint_path(cls, out_dir: Path) -> Path:
        """Where :meth:`train` writes its checkpoint in ``out_dir`` (it may not exist yet); ``trainable`` plugins."""
        raise NotImplementedError(f"generator {cls.name!r} is not trainable")

    @abstractmethod
    def sample(self, n: int, seed: int, *, offset: int = 0, batch_size: int | None = None) -> torch.Tensor:
        """Generate samples ``offset .. offset + n - 1`` of the run seeded with ``seed``.

        Returns ``(n, *protocol.tensor_shape)`` = ``(n, 1, D, H, W)`` (``(n, 1, 64, 128, 128)`` under
        flare22-v1; the protocol is the load context's) float32 on the CPU, values in [-1, 1]. Sample ``i``
        must depend on ``(seed, i)`` only (see :mod:`ctbench.seeding`), never on batch size or device.
        """

    @abstractmethod
    def info(self) -> GeneratorInfo:
        """Name, variant, version, resolved config and parameter count."""

"""The generator plugin interface and its lazy registry.

A generator plugin is a subclass of :class:`Generator` exposed through the entry-point group
``ctbench.generators`` in the plugin's own ``pyproject.toml``::

    [project.entry-points."ctbench.generators"]
    my-gan = "my_package.plugin:MyGAN"

ctbench's own generators register the same way. Plugins are imported only when first asked for; one
that fails to import is reported (``ctbench ls``) and does not affect the others.

``REGISTRY.load("NAME@VARIANT", checkpoint, overrides, context)`` builds a generator (unknown names and
variants raise :class:`UnknownNameError` listing the close ones); :func:`check_samples` is the contract
every ``sample()`` output is held to by ``ctbench evaluate``.
"""

from __future__ import annotations

import copy
import difflib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import torch

from ctbench.core.hashing import json_sha256

ENTRY_POINT_GROUP = "ctbench.generators"


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


class Generator(ABC):
    """A generator of CT volumes, built from a checkpoint and a config.

    Subclasses set ``name`` and implement :meth:`load`, :meth:`sample` and :meth:`info`. Variants
    (``NAME@VARIANT``) are the default config plus the overrides in :meth:`variants`.
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

    @abstractmethod
    def sample(self, n: int, seed: int, *, offset: int = 0, batch_size: int | None = None) -> torch.Tensor:
        """Generate samples ``offset .. offset + n - 1`` of the run seeded with ``seed``.

        Returns ``(n, 1, 64, 128, 128)`` float32 on the CPU, values in [-1, 1]. Sample ``i`` must
        depend on ``(seed, i)`` only (see :mod:`ctbench.seeding`), never on batch size or device.
        """

    @abstractmethod
    def info(self) -> GeneratorInfo:
        """Name, variant, version, resolved config and parameter count."""


class UnknownNameError(KeyError):
    """An unknown generator or variant; the message lists the closest known names."""

    def __init__(self, name: str, known: list[str], kind: str = "generator"):
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(known)) or 'none'}")

    def __str__(self) -> str:
        return str(self.args[0])


class BadSamplesError(ValueError):
    """A generator returned something other than ``(n, 1, 64, 128, 128)`` float32 finite values in [-1, 1]."""


def check_samples(x: object, n: int, generator: str, shape: tuple[int, ...] = (1, 64, 128, 128)) -> torch.Tensor:
    """Validate what ``generator.sample(n, ...)`` returned; raises :class:`BadSamplesError` naming the generator.

    Accepts a CPU or device tensor; returns it on the CPU.
    """
    where = f"generator {generator!r} sample(n={n})"
    if not isinstance(x, torch.Tensor):
        raise BadSamplesError(f"{where} returned {type(x).__name__}, expected a torch.Tensor")
    if tuple(x.shape) != (n, *shape):
        raise BadSamplesError(f"{where} returned shape {tuple(x.shape)}, expected {(n, *shape)}")
    if x.dtype != torch.float32:
        raise BadSamplesError(f"{where} returned dtype {x.dtype}, expected torch.float32")
    x = x.detach().cpu()
    bad = ~torch.isfinite(x)
    if bad.any():
        first = int(bad.flatten(1).any(1).nonzero()[0])
        raise BadSamplesError(f"{where} returned {int(bad.sum())} NaN/inf values (first in sample {first})")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - 1e-6 or hi > 1.0 + 1e-6:
        raise BadSamplesError(f"{where} returned values in [{lo:.4g}, {hi:.4g}], expected [-1, 1]")
    return x


@dataclass
class PluginStatus:
    """One registered entry point: loaded class, or the error that stopped it."""

    name: str
    target: str
    cls: type[Generator] | None = None
    error: str | None = None
    package: str | None = None
    package_version: str | None = None


class Registry:
    """Lazy registry of generator plugins found through entry points (plus explicit registrations)."""

    def __init__(self, group: str = ENTRY_POINT_GROUP):
        self.group = group
        self._extra: dict[str, type[Generator]] = {}
        self._cache: dict[str, PluginStatus] = {}

    def register(self, cls: type[Generator]) -> type[Generator]:
        """Register a class directly (tests, notebooks); usable as a decorator."""
        self._extra[cls.name] = cls
        return cls

    def _entry_points(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        """All registered generator names, loaded or not."""
        return sorted(set(self._entry_points()) | set(self._extra))

    def status(self, name: str) -> PluginStatus:
        """Import one plugin (once) and report how that went; never raises for import errors."""
        if name in self._extra:
            return PluginStatus(name, "registered in-process", cls=self._extra[name])
        if name not in self._cache:
            eps = self._entry_points()
            if name not in eps:
                raise UnknownNameError(name, self.names())
            ep = eps[name]
            dist = getattr(ep, "dist", None)
            st = PluginStatus(
                name,
                ep.value,
                package=dist.metadata["Name"] if dist else None,
                package_version=dist.version if dist else None,
            )
            try:
                st.cls = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                st.error = f"{type(exc).__name__}: {exc}"
            self._cache[name] = st
        return self._cache[name]

    def get(self, name: str) -> type[Generator]:
        """The plugin class for ``name``; raises :class:`UnknownNameError` or, if it failed to import, RuntimeError."""
        st = self.status(name)
        if st.cls is None:
            raise RuntimeError(f"generator plugin {name!r} ({st.target}) failed to load: {st.error}")
        return st.cls

    def statuses(self) -> list[PluginStatus]:
        """Every registered plugin, imported, with its load error if any (for ``ctbench ls``)."""
        return [self.status(name) for name in self.names()]

    def resolve(self, spec: str) -> tuple[type[Generator], str]:
        """Class and variant for ``NAME[@VARIANT]``; unknown names and variants list the close ones."""
        name, variant = parse_spec(spec)
        cls = self.get(name)
        variant = variant or cls.default_variant()
        known = ["default", *cls.variants()]
        if variant not in known:
            raise UnknownNameError(f"{name}@{variant}", [f"{name}@{v}" for v in known], kind="variant")
        return cls, variant

    def load(
        self,
        spec: str,
        checkpoint: Path | None = None,
        overrides: dict[str, Any] | None = None,
        context: LoadContext | None = None,
    ) -> Generator:
        """Build the generator ``NAME[@VARIANT]`` ready to sample."""
        cls, variant = self.resolve(spec)
        return cls.load(checkpoint, variant=variant, overrides=overrides, context=context or LoadContext())


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``NAME[@VARIANT]`` into (name, variant or None)."""
    name, _, variant = spec.partition("@")
    return name, (variant or None)


REGISTRY = Registry()

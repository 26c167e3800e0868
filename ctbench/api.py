"""The generator plugin interface and its lazy registry.

A generator plugin is a subclass of :class:`Generator` exposed through the entry-point group
``ctbench.generators`` in the plugin's own ``pyproject.toml``::

    [project.entry-points."ctbench.generators"]
    my-gan = "my_package.plugin:MyGAN"

ctbench's own generators register the same way. Plugins are imported only when first asked for, and
checked against the contract (:func:`check_plugin`) right then: one that fails to import or breaks the
contract is listed by ``ctbench ls`` as broken, with the reason, and does not affect the others; using it
raises :class:`PluginError`.

``REGISTRY.load("NAME@VARIANT", checkpoint, overrides, context)`` builds a generator (unknown names and
variants raise :class:`UnknownNameError` listing the close ones). Calls into plugin code run under
:func:`plugin_errors`, which turns an unexpected exception into one :class:`PluginError` naming the plugin;
:func:`check_samples` and :func:`check_info` are the contract every ``sample()`` and ``info()`` result is
held to by ``ctbench evaluate``.
"""

from __future__ import annotations

import copy
import inspect
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch

from ctbench.core.hashing import json_sha256
from ctbench.core.plugins import UnknownNameError as UnknownNameError  # re-exported: part of the plugin API
from ctbench.core.plugins import distribution_of, group_entry_points
from ctbench.protocol import DEFAULT_PROTOCOL, Protocol

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # Python 3.10 has it in importlib.abc only
    from importlib.abc import Traversable

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


class BadSamplesError(ValueError):
    """A generator returned something other than ``(n, *protocol.tensor_shape)`` float32 finite values in [-1, 1]."""


class PluginError(RuntimeError):
    """A generator plugin that is broken (fails to import or breaks the contract) or whose code raised unexpectedly.

    The message names the plugin; the CLI shows it as one ``Error:`` line.
    """


def check_samples(x: object, n: int, generator: str, protocol: Protocol = DEFAULT_PROTOCOL) -> torch.Tensor:
    """Validate what ``generator.sample(n, ...)`` returned; raises :class:`BadSamplesError` naming the generator.

    Expected: ``(n, *protocol.tensor_shape)`` float32, finite, in [-1, 1]. Accepts a CPU or device tensor;
    returns it on the CPU.
    """
    where = f"generator {generator!r} sample(n={n})"
    shape = protocol.tensor_shape
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


def check_info(x: object, generator: str) -> GeneratorInfo:
    """Validate what ``generator.info()`` returned; raises :class:`PluginError` naming the generator."""
    if not isinstance(x, GeneratorInfo):
        raise PluginError(f"generator {generator!r}: info() returned {type(x).__name__}, expected a GeneratorInfo")
    return x


@contextmanager
def plugin_errors(generator: str, call: str, expected: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Run plugin code; an unexpected exception becomes a :class:`PluginError` naming ``generator`` and ``call``.

    ``ValueError`` (with its subclasses, e.g. :class:`BadSamplesError`) and :class:`UnknownNameError` are how
    a plugin reports a user error (no checkpoint, a bad override): they pass unchanged, as do PluginError and
    the caller's ``expected`` exceptions. ``KeyboardInterrupt`` is not an ``Exception`` and passes too.
    """
    passed: tuple[type[Exception], ...] = (ValueError, UnknownNameError, PluginError, *expected)
    try:
        yield
    except passed:
        raise
    except Exception as exc:
        raise PluginError(f"generator {generator!r}: {call}() raised {type(exc).__name__}: {exc}") from exc


_CLASS_HOOKS = (
    "load", "default_config", "variants", "default_variant", "resolve_config", "config_files", "train",
    "checkpoint_path",
)
_DIR = Path()
_SIGNATURES: dict[str, tuple[tuple, dict[str, Any], str]] = {
    # hook: (positional, keyword arguments ctbench passes, how the call is written); the class or instance excluded
    "load": ((None,), {"variant": None, "overrides": None, "context": None},
             "load(checkpoint, *, variant, overrides, context)"),
    "sample": ((1, 0), {"offset": 0, "batch_size": None}, "sample(n, seed, *, offset, batch_size)"),
    "info": ((), {}, "info()"),
    "train": (({}, _DIR, _DIR), {"stage": None, "resume": False, "variant": None},
              "train(config, data, out_dir, *, stage, resume, variant)"),
    "checkpoint_path": ((_DIR,), {}, "checkpoint_path(out_dir)"),
}


def _accepts(fn: Any, args: tuple, kwargs: dict[str, Any]) -> bool:
    """Whether ``fn(*args, **kwargs)`` binds to ``fn``'s signature (nothing is called)."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return False
    return True


def _call_hook(cls: type[Generator], hook: str, *args: Any) -> Any:
    """``cls.hook(*args)``; any exception becomes a :class:`PluginError` stating the hook."""
    try:
        return getattr(cls, hook)(*args)
    except Exception as exc:
        raise PluginError(f"{hook}() raised {type(exc).__name__}: {exc}") from exc


class CheckedPlugin(NamedTuple):
    """What :func:`check_plugin` found in a plugin that keeps the contract."""

    variants: list[str]
    """``"default"`` first."""
    default_variant: str
    configs: list[str]
    """Names of the config files it ships."""


def check_plugin(obj: object, name: str | None = None) -> CheckedPlugin:
    """Check ``obj`` against the generator plugin contract; returns its variants and shipped configs.

    The contract: ``obj`` is a subclass of :class:`Generator` whose ``name`` is a non-empty ``str`` without
    ``@`` (equal to ``name``, its entry point's, when given); ``load``, ``sample`` and ``info`` are implemented
    (not abstract) and accept the arguments ctbench passes; the config hooks and ``load`` are classmethods;
    ``default_config()`` returns a dict, ``variants()`` a dict of variant name → dict of overrides,
    ``default_variant()`` ``"default"`` or one of them, ``config_files()`` a dict of name → file, and every
    variant resolves to a config dict; ``trainable`` is a bool, and a trainable plugin implements ``train`` and
    ``checkpoint_path``. Raises :class:`PluginError` stating the first breach (the message does not name the
    plugin: the caller does).
    """
    if not (isinstance(obj, type) and issubclass(obj, Generator)):
        what = f"class {obj.__qualname__}" if isinstance(obj, type) else f"a {type(obj).__name__} object"
        raise PluginError(f"{what} is not a subclass of ctbench.api.Generator")
    cls = obj
    own = getattr(cls, "name", None)
    if not isinstance(own, str) or not own or "@" in own:
        raise PluginError(f"class {cls.__qualname__} has no valid `name` (a non-empty str without '@'), got {own!r}")
    if name is not None and own != name:
        raise PluginError(f"class {cls.__qualname__} has the name {own!r}, but its entry point is {name!r}")
    if inspect.isabstract(cls):
        raise PluginError(f"class {cls.__qualname__} does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    for hook in _CLASS_HOOKS:
        if not isinstance(inspect.getattr_static(cls, hook), classmethod):
            raise PluginError(f"{hook} must be a classmethod")
    if not isinstance(cls.trainable, bool):
        raise PluginError(f"trainable must be True or False, got {cls.trainable!r}")
    hooks = ["load", "sample", "info"]
    if cls.trainable:
        for hook in ("train", "checkpoint_path"):
            if getattr(cls, hook).__func__ is getattr(Generator, hook).__func__:
                raise PluginError(f"trainable, but does not implement {hook}")
        hooks += ["train", "checkpoint_path"]
    for hook in hooks:
        args, kwargs, written = _SIGNATURES[hook]
        if not _accepts(getattr(cls, hook), (None, *args) if hook in ("sample", "info") else args, kwargs):
            raise PluginError(f"{hook}() must accept the call {written}")

    config = _call_hook(cls, "default_config")
    if not isinstance(config, dict):
        raise PluginError(f"default_config() returned {type(config).__name__}, expected a dict")
    variants = _call_hook(cls, "variants")
    if not isinstance(variants, dict):
        raise PluginError(f"variants() returned {type(variants).__name__}, expected a dict of name -> dict")
    for key, value in variants.items():
        if not isinstance(key, str) or not key or "@" in key:
            raise PluginError(f"variants() has the key {key!r}; variant names are non-empty str without '@'")
        if not isinstance(value, dict):
            raise PluginError(f"variants()[{key!r}] is {type(value).__name__}, expected a dict of overrides")
    known = ["default", *(v for v in variants if v != "default")]
    default = _call_hook(cls, "default_variant")
    if default not in known:
        raise PluginError(f"default_variant() returned {default!r}, not one of its variants ({', '.join(known)})")
    files = _call_hook(cls, "config_files")
    if not isinstance(files, dict) or not all(isinstance(f, Traversable) for f in files.values()):
        raise PluginError("config_files() must return a dict of name -> file (pathlib.Path or importlib.resources)")
    for variant in known:
        resolved = _call_hook(cls, "resolve_config", variant)
        if not isinstance(resolved, dict):
            raise PluginError(f"resolve_config({variant!r}) returned {type(resolved).__name__}, expected a dict")
    return CheckedPlugin(known, default, list(files))


@dataclass
class PluginStatus:
    """One registered plugin: its checked class, or why it is broken (it failed to import or to keep the contract)."""

    name: str
    target: str
    cls: type[Generator] | None = None
    error: str | None = None
    package: str | None = None
    package_version: str | None = None
    variants: list[str] = field(default_factory=list)
    """Its variants, ``"default"`` first; empty when broken."""
    default_variant: str | None = None
    configs: list[str] = field(default_factory=list)
    """Names of the config files it ships (``ctbench train NAME --config CONFIG``)."""


class Registry:
    """Lazy registry of generator plugins found through entry points (plus explicit registrations).

    Each plugin is imported and checked (:func:`check_plugin`) once, when first asked for.
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP):
        self.group = group
        self._extra: dict[str, PluginStatus] = {}
        self._cache: dict[str, PluginStatus] = {}

    def register(self, cls: type[Generator]) -> type[Generator]:
        """Register a class directly (tests, notebooks); usable as a decorator. A broken one raises PluginError."""
        try:
            checked = check_plugin(cls)
        except PluginError as exc:
            raise PluginError(f"cannot register {getattr(cls, '__qualname__', cls)!r}: {exc}") from exc
        self._extra[cls.name] = PluginStatus(cls.name, "registered in-process", cls=cls, **checked._asdict())
        return cls

    def _entry_points(self) -> dict[str, Any]:
        return group_entry_points(self.group)

    def names(self) -> list[str]:
        """All registered generator names, loaded or not, broken or not."""
        return sorted(set(self._entry_points()) | set(self._extra))

    def status(self, name: str) -> PluginStatus:
        """Import and check one plugin (once) and report how that went; raises only :class:`UnknownNameError`."""
        if name in self._extra:
            return self._extra[name]
        if name not in self._cache:
            eps = self._entry_points()
            if name not in eps:
                raise UnknownNameError(name, sorted(self.names()))
            ep = eps[name]
            package, version = distribution_of(ep)
            st = PluginStatus(name, ep.value, package=package, package_version=version)
            try:  # a broken plugin must not take the others down
                obj = ep.load()
            except Exception as exc:
                st.error = f"{type(exc).__name__}: {exc}"
            else:
                try:
                    st.variants, st.default_variant, st.configs = check_plugin(obj, name)
                    st.cls = obj
                except PluginError as exc:
                    st.error = str(exc)
            self._cache[name] = st
        return self._cache[name]

    def get(self, name: str) -> type[Generator]:
        """The plugin class for ``name``; raises :class:`UnknownNameError`, or :class:`PluginError` if it is broken."""
        st = self.status(name)
        if st.cls is None:
            raise PluginError(f"generator {name!r} ({st.target}) is broken: {st.error}")
        return st.cls

    def statuses(self) -> list[PluginStatus]:
        """Every registered plugin, imported and checked, with the reason if it is broken (for ``ctbench ls``)."""
        return [self.status(name) for name in self.names()]

    def resolve(self, spec: str) -> tuple[type[Generator], str]:
        """Class and variant for ``NAME[@VARIANT]``; unknown names and variants list the close ones."""
        name, variant = parse_spec(spec)
        cls = self.get(name)
        st = self.status(name)
        variant = variant or st.default_variant
        if variant not in st.variants:
            raise UnknownNameError(f"{name}@{variant}", [f"{name}@{v}" for v in st.variants], kind="variant")
        return cls, variant

    def load(
        self,
        spec: str,
        checkpoint: Path | None = None,
        overrides: dict[str, Any] | None = None,
        context: LoadContext | None = None,
    ) -> Generator:
        """Build the generator ``NAME[@VARIANT]`` ready to sample; the plugin's errors as :func:`plugin_errors` says."""
        cls, variant = self.resolve(spec)
        with plugin_errors(f"{cls.name}@{variant}", "load"):
            gen = cls.load(checkpoint, variant=variant, overrides=overrides, context=context or LoadContext())
        if not isinstance(gen, cls):
            got = type(gen).__name__
            raise PluginError(f"generator {cls.name!r}: load() returned {got}, expected a {cls.__name__}")
        return gen


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``NAME[@VARIANT]`` into (name, variant or None)."""
    name, _, variant = spec.partition("@")
    return name, (variant or None)


REGISTRY = Registry()

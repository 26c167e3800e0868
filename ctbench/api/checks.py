"""The contract a plugin is held to: its class (:func:`check_plugin`, when first loaded), what ``sample()`` and
``info()`` return (:func:`check_samples`, :func:`check_info`, on every call from ``ctbench evaluate``), and calls
into its code (:func:`plugin_errors`)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ctbench.api.generator import Generator, GeneratorInfo
from ctbench.core.plugins import UnknownNameError
from ctbench.protocol import DEFAULT_PROTOCOL, Protocol

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # Python 3.10 has it in importlib.abc only
    from importlib.abc import Traversable


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


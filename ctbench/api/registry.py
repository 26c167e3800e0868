"""The lazy registry of generator plugins found through the ``ctbench.generators`` entry points."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctbench.api.checks import PluginError, check_plugin, plugin_errors
from ctbench.api.generator import Generator, LoadContext
from ctbench.core.plugins import UnknownNameError, distribution_of, group_entry_points

ENTRY_POINT_GROUP = "ctbench.generators"


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

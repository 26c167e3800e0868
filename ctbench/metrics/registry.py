"""The metric registry: ctbench's own metrics and third-party ones from the ``ctbench.metrics`` entry points.

A third-party package declares, in its own ``pyproject.toml``::

    [project.entry-points."ctbench.metrics"]
    my-metric = "my_package.metric:MyMetric"

where ``MyMetric`` subclasses :class:`~ctbench.metrics.contract.Metric`. Metrics are imported when first asked
for; one that fails to import or breaks the contract is listed as broken (``ctbench ls``) with the reason
and never takes the others down. Built-in names cannot be taken over by a plugin.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ctbench.core.errors import CtbenchError
from ctbench.core.kinds import kind_mismatch
from ctbench.core.plugins import UnknownNameError, distribution_of, group_entry_points
from ctbench.metrics.contract import Key, Metric

ENTRY_POINT_GROUP = "ctbench.metrics"

BUILTIN: dict[str, str] = {
    "fid": "ctbench.metrics.fid:TriPlanarFID",
    "fvd": "ctbench.metrics.fvd:FVD",
    "fid3d-medicalnet": "ctbench.metrics.fid3d:MedicalNetFID",
    "fid-radimagenet": "ctbench.metrics.fid_radimagenet:RadImageNetFID",
    "intensity": "ctbench.metrics.intensity:Intensity",
    "diversity": "ctbench.metrics.diversity:Diversity",
    "memorisation": "ctbench.metrics.memorisation:Memorisation",
}
"""Name → ``module:Class`` of ctbench's own metrics, in the order records and boards show them."""


def option_parameters(cls: type) -> dict[str, inspect.Parameter] | None:
    """The keyword options a metric class takes, by name, gathered along its ``__init__`` chain while each passes
    ``**options`` on to its base; None when the chain ends in ``**options`` of its own (any name may be valid)."""
    params: dict[str, inspect.Parameter] = {}
    open_ended = False
    for klass in cls.__mro__[:-1]:  # not object: its (*args, **kwargs) takes no option
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        open_ended = True
        try:
            found = list(inspect.signature(init).parameters.values())[1:]
        except (TypeError, ValueError):  # no signature to read (a builtin): let the call say what is wrong
            return None
        params.update({p.name: p for p in found if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                       and p.name not in params})
        if not any(p.kind is p.VAR_KEYWORD for p in found):
            return params
    return None if open_ended else params


_KINDS = {"bool": False, "int": 0, "float": 0.0, "str": ""}


def _wanted_kind(param: inspect.Parameter, value: Any) -> str | None:
    """What option ``param`` must be when ``value`` is not of the kind of its default (or, for a None default, of
    its annotation ``int | None``: then null too), else None."""
    default = param.default
    if default is None and isinstance(param.annotation, str):
        kind = param.annotation.split("|")[0].strip()
        wanted = _wanted_kind(param.replace(default=_KINDS[kind]), value) if kind in _KINDS else None
        return None if value is None or wanted is None else f"{wanted} or null"
    return kind_mismatch(default, value)


class BrokenMetricError(CtbenchError, RuntimeError):
    """A registered metric that failed to import or breaks the Metric contract."""


@dataclass
class MetricStatus:
    """One registered metric: its class, or why it cannot be used."""

    name: str
    target: str
    cls: type[Metric] | None = None
    error: str | None = None
    package: str | None = None
    package_version: str | None = None

    @property
    def builtin(self) -> bool:
        return self.package is None


def contract_problems(cls: Any, name: str) -> list[str]:
    """Ways ``cls`` breaks the Metric contract (empty when it keeps it)."""
    if not isinstance(cls, type) or not issubclass(cls, Metric):
        return [f"{cls!r} is not a subclass of ctbench.metrics.contract.Metric"]
    problems = []
    if getattr(cls, "__abstractmethods__", None):
        problems.append(f"does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    if getattr(cls, "name", None) != name:
        problems.append(f"its name attribute is {getattr(cls, 'name', None)!r}, registered as {name!r}")
    if not isinstance(getattr(cls, "version", None), str):
        problems.append("has no version string")
    keys = getattr(cls, "keys", None)
    if not isinstance(keys, tuple) or not keys or not all(isinstance(k, Key) for k in keys):
        problems.append("keys must be a non-empty tuple of ctbench.metrics.contract.Key")
    elif len({k.name for k in keys}) != len(keys):
        problems.append("declares the same key twice")
    return problems


class MetricRegistry:
    """Lazy registry of metrics: built-ins first, then entry points (sorted by name)."""

    def __init__(self, group: str = ENTRY_POINT_GROUP):
        self.group = group
        self._cache: dict[str, MetricStatus] = {}
        self._extra: dict[str, type[Metric]] = {}

    def register(self, cls: type[Metric]) -> type[Metric]:
        """Register a class in-process (tests, notebooks); usable as a decorator."""
        problems = contract_problems(cls, getattr(cls, "name", "?"))
        if problems:
            raise BrokenMetricError(f"metric {getattr(cls, 'name', cls)!r}: " + "; ".join(problems))
        self._extra[cls.name] = cls
        self._cache.pop(cls.name, None)
        return cls

    def unregister(self, name: str) -> None:
        self._extra.pop(name, None)
        self._cache.pop(name, None)

    def _entry_points(self) -> dict[str, Any]:
        return {name: ep for name, ep in group_entry_points(self.group).items() if name not in BUILTIN}

    def shadowed(self) -> list[str]:
        """Entry points that claim a built-in metric's name (ignored), as ``name (target)``."""
        return [f"{ep.name} ({ep.value})" for ep in entry_points(group=self.group) if ep.name in BUILTIN]

    def names(self) -> list[str]:
        """Every registered metric name, built-ins first in their fixed order, loaded or not."""
        extra = sorted((set(self._entry_points()) | set(self._extra)) - set(BUILTIN))
        return [*BUILTIN, *extra]

    def status(self, name: str) -> MetricStatus:
        """Import one metric (once) and check its contract; never raises for a broken plugin."""
        if name in self._cache:
            return self._cache[name]
        if name in self._extra:
            st = MetricStatus(name, "registered in-process", cls=self._extra[name])
        elif name in BUILTIN:
            module, _, attr = BUILTIN[name].partition(":")
            st = MetricStatus(name, BUILTIN[name], cls=getattr(importlib.import_module(module), attr))
        else:
            eps = self._entry_points()
            if name not in eps:
                raise UnknownNameError(name, self.names(), kind="metric")
            ep = eps[name]
            package, version = distribution_of(ep)
            st = MetricStatus(name, ep.value, package=package, package_version=version)
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                st.error = f"{type(exc).__name__}: {exc}"
            else:
                problems = contract_problems(loaded, name)
                if problems:
                    st.error = "breaks the Metric contract: " + "; ".join(problems)
                else:
                    st.cls = loaded
        self._cache[name] = st
        return st

    def statuses(self) -> list[MetricStatus]:
        return [self.status(n) for n in self.names()]

    def get(self, name: str) -> type[Metric]:
        """The class of metric ``name``; :class:`UnknownNameError` or :class:`BrokenMetricError`."""
        st = self.status(name)
        if st.cls is None:
            raise BrokenMetricError(f"metric plugin {name!r} ({st.target}) cannot be used: {st.error}")
        return st.cls

    def create(self, name: str, **options: Any) -> Metric:
        """An instance of metric ``name`` built with ``options``; bad options raise ``ValueError`` naming them."""
        cls = self.get(name)
        params = option_parameters(cls)
        if params is not None:
            unknown = [key for key in options if key not in params]
            if unknown:
                raise ValueError(
                    f"metric {name!r} has no option {', '.join(unknown)}; its options: {', '.join(params) or 'none'}"
                )
            for key, value in options.items():
                wanted = _wanted_kind(params[key], value)
                if wanted:
                    raise ValueError(f"metric {name!r}: option {key}={value!r} must be {wanted}")
        try:
            return cls(**options)
        except TypeError as exc:
            raise ValueError(f"metric {name!r}: bad options {options}: {exc}") from exc

    def key(self, key: str) -> Key | None:
        """The declaration of a reported key (``fid_xy``) among the usable metrics, or None."""
        for st in self.statuses():
            if st.cls is not None:
                for k in st.cls.keys:
                    if k.name == key:
                        return k
        return None

    def all_keys(self) -> list[Key]:
        """Every key of every usable metric, in registry order."""
        return [k for st in self.statuses() if st.cls is not None for k in st.cls.keys]

    def metric_of(self, key: str) -> str | None:
        """The name of the metric that reports ``key``."""
        for st in self.statuses():
            if st.cls is not None and key in {k.name for k in st.cls.keys}:
                return st.name
        return None


METRICS = MetricRegistry()


def get_metric(name: str, **options: Any) -> Metric:
    """A metric instance by name (``options`` to its constructor, e.g. FID's ``slice_step``)."""
    return METRICS.create(name, **options)


def list_metrics() -> list[str]:
    """Names of every registered metric (built-ins first)."""
    return METRICS.names()

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

from ctbench.api.checks import (
    BadSamplesError,
    CheckedPlugin,
    PluginError,
    check_info,
    check_plugin,
    check_samples,
    plugin_errors,
)
from ctbench.api.generator import Generator, GeneratorInfo, LoadContext, config_hash, deep_update
from ctbench.api.registry import ENTRY_POINT_GROUP, REGISTRY, PluginStatus, Registry, parse_spec
from ctbench.core.plugins import UnknownNameError

__all__ = [
    "ENTRY_POINT_GROUP", "REGISTRY", "BadSamplesError", "CheckedPlugin", "Generator", "GeneratorInfo", "LoadContext",
    "PluginError", "PluginStatus", "Registry", "UnknownNameError", "check_info", "check_plugin", "check_samples",
    "config_hash", "deep_update", "parse_spec", "plugin_errors",
]

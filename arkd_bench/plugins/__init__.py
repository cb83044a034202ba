"""Plugins: the hook specifications, the table of kinds, the registries, the plugin manager
and the builtins, which register through the same hooks as a third party.

Modules, lowest first: `hookspecs` and `kinds` (import nothing of the project), `options`
(`PluginOptions`), `registry`, `output` (checks of what a plugin returns), `files` (plugin
files), `checks` (one-line refusals of bad hook implementations), `register` (the hooks'
`register` callback), `manager` (every loading rule), `builtin` (the builtin hookimpls).
The names below are imported on first use, so importing `arkd_bench.plugins.kinds` from a
lower layer does not load the manager.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arkd_bench.plugins.errors import PluginLoadError, PluginsDirError
    from arkd_bench.plugins.files import plugin_files_in
    from arkd_bench.plugins.hookspecs import hookimpl
    from arkd_bench.plugins.manager import (DEFAULT_PLUGINS, ENTRY_POINT_GROUP, PluginFailure, Plugins,
                                            default_plugins, load_plugins)
    from arkd_bench.plugins.options import PluginOptions
    from arkd_bench.plugins.registry import RegistryError

_LAZY = {
    "DEFAULT_PLUGINS": "manager",
    "ENTRY_POINT_GROUP": "manager",
    "PluginFailure": "manager",
    "PluginLoadError": "errors",
    "PluginsDirError": "errors",
    "Plugins": "manager",
    "default_plugins": "manager",
    "load_plugins": "manager",
    "plugin_files_in": "files",
    "RegistryError": "registry",
    "hookimpl": "hookspecs",
    "PluginOptions": "options",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)

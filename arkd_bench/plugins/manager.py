"""The plugin manager and every loading rule: builtins, entry points, plugin files.

Sources, in order: the builtin modules in `arkd_bench.plugins.builtin` (registered the
same way a third party is), installed distributions with an `arkd_bench` entry point
(loaded by pluggy's `load_setuptools_entrypoints`, which also remembers each one's
distribution: `pm.list_plugin_distinfo()`), and `.py` files (from `--plugins-dir` or a
recipe's `plugins:` list).

Environment switches:
  ARKD_BENCH_NO_AUTOLOAD=1        skip installed entry points (tests use this)
  ARKD_BENCH_LOAD_PLUGINS=a,b     load only these entry points ("" loads none)
  ARKD_BENCH_STRICT_PLUGINS=1     a plugin that fails to import is fatal
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pluggy

from arkd_bench.plugins import hookspecs
from arkd_bench.plugins.checks import check_hook_names, check_marked, refusal, register_checked
from arkd_bench.plugins.errors import PluginLoadError, PluginsDirError
from arkd_bench.plugins.files import import_file, plugin_files_in, plugin_name
from arkd_bench.plugins.kinds import KINDS
from arkd_bench.plugins.register import fill_registries
from arkd_bench.plugins.registry import Registry, RegistryError

PROJECT = "arkd_bench"
ENTRY_POINT_GROUP = "arkd_bench"

DEFAULT_PLUGINS = (
    "arkd_bench.plugins.builtin.divergences",
    "arkd_bench.plugins.builtin.weightings",
    "arkd_bench.plugins.builtin.datasets",
    "arkd_bench.plugins.builtin.metrics",
    "arkd_bench.plugins.builtin.reporters",
    "arkd_bench.plugins.builtin.data_policies",
)


@dataclass(frozen=True)
class PluginFailure:
    name: str
    source: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} ({self.source}) failed to load and was skipped: {self.error}"


@dataclass
class Plugins:
    """A loaded plugin manager plus the registries its hooks filled."""

    pm: pluggy.PluginManager
    registries: dict[str, Registry]
    failures: list[PluginFailure] = field(default_factory=list)

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def create(self, kind: str, name: str, **options: Any) -> Any:
        return self.registries[kind].create(name, **options)

    def entries(self):
        return [entry for kind in KINDS for entry in self.registries[kind].entries()]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


Failed = Callable[[str, str, BaseException], None]


def load_plugins(
    plugin_files: Iterable[str | Path] = (),
    *,
    plugins_dirs: Iterable[str | Path] = (),
    strict: bool | None = None,
    autoload: bool | None = None,
    extra: Iterable[tuple[str, object]] = (),
) -> Plugins:
    """Build a plugin manager from every source and fill the registries.

    A plugin that fails to import is recorded in `failures` and skipped, unless
    strict. Registering a name twice raises RegistryError naming both plugins.
    `extra` holds (name, plugin object) pairs registered after the builtins.
    """
    strict = _env_flag("ARKD_BENCH_STRICT_PLUGINS") if strict is None else strict
    autoload = (not _env_flag("ARKD_BENCH_NO_AUTOLOAD")) if autoload is None else autoload
    pm = _new_manager()
    failures: list[PluginFailure] = []

    def failed(name: str, source: str, exc: BaseException) -> None:
        failure = PluginFailure(name, source, f"{type(exc).__name__}: {exc}")
        if strict:
            raise PluginLoadError(str(failure).replace("and was skipped", "")) from exc
        failures.append(failure)

    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name.rsplit(".", 1)[-1])
    for name, plugin in extra:
        pm.register(plugin, name=name)
    if autoload:
        _load_entry_points(pm, failed)
    files = [Path(p) for p in plugin_files]
    for directory in plugins_dirs:
        files.extend(plugin_files_in(directory))
    _load_files(pm, files, failed)
    check_hook_names(pm)
    pm.check_pending()
    return Plugins(pm=pm, registries=fill_registries(pm), failures=failures)


def _wanted_entry_points() -> dict[str, str]:
    """Name -> `module:attr` of the group's entry points that ARKD_BENCH_LOAD_PLUGINS lets
    load (each name once: editable installs can show a distribution twice)."""
    only = os.environ.get("ARKD_BENCH_LOAD_PLUGINS")
    wanted = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
    found: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if wanted is None or ep.name in wanted:
            found.setdefault(ep.name, ep.value)
    return found


def _load_entry_points(pm: pluggy.PluginManager, failed: Failed) -> None:
    """Each installed plugin through pluggy's loader, one name at a time: an installed plugin
    the user did not name on this command line must not stop every command, so whatever is
    wrong with it (import error, bad hook, sys.exit()) skips it, unless strict."""
    for name, value in _wanted_entry_points().items():
        if pm.has_plugin(name):
            continue
        source = f"entry point {value}"
        try:
            try:
                pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
            except pluggy.PluginValidationError as exc:
                raise refusal(pm, exc, name, source) from None
            check_marked(pm, name, pm.get_plugin(name), source)
        except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() must not end the command
            if pm.has_plugin(name):
                pm.unregister(name=name)
            failed(name, source, exc)


def _load_files(pm: pluggy.PluginManager, files: list[Path], failed: Failed) -> None:
    for path in files:
        if not path.is_file():
            raise PluginLoadError(f"plugin file {path} does not exist")
        name = plugin_name(path)
        if pm.has_plugin(name):
            continue
        try:
            plugin = import_file(path)
            register_checked(pm, plugin, name, str(path))
        except PluginLoadError:
            raise
        except (Exception, SystemExit) as exc:
            failed(name, str(path), exc)
        else:
            check_marked(pm, name, plugin, str(path))


_override: list[Plugins] = []


def default_plugins() -> Plugins:
    """The plugins every Python caller sees: builtins plus installed entry points
    (or, inside `arkd_bench.testing.registered_plugin`, the plugins it set up)."""
    return _override[-1] if _override else _cached_default()


@lru_cache(maxsize=1)
def _cached_default() -> Plugins:
    return load_plugins()


__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PluginFailure",
    "PluginLoadError",
    "PluginsDirError",
    "Plugins",
    "RegistryError",
    "default_plugins",
    "load_plugins",
    "plugin_files_in",
]

"""The plugin manager and every loading rule: builtins, entry points, plugin files.

Sources, in order: the builtin modules in `arkd_bench.default_plugins` (registered the
same way a third party is), installed distributions with an `arkd_bench` entry point,
and `.py` files (from `--plugins-dir` or a recipe's `plugins:` list).

Environment switches:
  ARKD_BENCH_NO_AUTOLOAD=1        skip installed entry points (tests use this)
  ARKD_BENCH_LOAD_PLUGINS=a,b     load only these entry points ("" loads none)
  ARKD_BENCH_STRICT_PLUGINS=1     a plugin that fails to import is fatal
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pluggy

from arkd_bench import hookspecs
from arkd_bench.kinds import KINDS, PLUGIN_KINDS
from arkd_bench.registry import Registry, RegistryError

PROJECT = "arkd_bench"
ENTRY_POINT_GROUP = "arkd_bench"

DEFAULT_PLUGINS = (
    "arkd_bench.default_plugins.divergences",
    "arkd_bench.default_plugins.weightings",
    "arkd_bench.default_plugins.datasets",
    "arkd_bench.default_plugins.metrics",
    "arkd_bench.default_plugins.reporters",
    "arkd_bench.default_plugins.data_policies",
)



class PluginLoadError(Exception):
    """A plugin could not be loaded and strict mode is on (or the file does not exist)."""


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


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """Entry points of the group, each once even when a distribution is seen twice
    (editable installs can put the same distribution on the path twice)."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = (ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            unique.append(ep)
    return unique


def _import_file(path: Path):
    module_name = f"arkd_bench_plugin_{path.stem}_{abs(hash(str(path.resolve()))):x}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def plugin_files_in(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise PluginLoadError(f"--plugins-dir {directory}: not a directory")
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


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
        only = os.environ.get("ARKD_BENCH_LOAD_PLUGINS")
        wanted = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
        for ep in _entry_points():
            if wanted is not None and ep.name not in wanted:
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:
                failed(ep.name, f"entry point {ep.value}", exc)

    files = [Path(p) for p in plugin_files]
    for directory in plugins_dirs:
        files.extend(plugin_files_in(directory))
    for path in files:
        if not path.is_file():
            raise PluginLoadError(f"plugin file {path} does not exist")
        # A package's __init__.py is better known by its folder's name.
        name = path.parent.name if path.name == "__init__.py" else path.name
        if pm.get_plugin(name) is not None:
            continue
        try:
            pm.register(_import_file(path), name=name)
        except Exception as exc:
            failed(name, str(path), exc)

    pm.check_pending()
    return Plugins(pm=pm, registries=_fill_registries(pm), failures=failures)


def recipe_plugin_files(run_dir: str | Path, search: Iterable[str | Path] = ()) -> list[Path]:
    """The plugin files a run folder's recipe listed (`plugins:`), resolved as the run did:
    relative to the recipe's original folder (run.json's `recipe_path`), else to the run
    folder, else by file name in the `search` folders. A file found nowhere is an error
    that says where it was looked for."""
    import json

    import yaml

    run_dir = Path(run_dir)
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8")) or {}
    listed = recipe.get("plugins") or []
    if not listed:
        return []
    recipe_path = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("recipe_path")
    bases = [Path(recipe_path).parent] if recipe_path else []
    files = []
    for name in listed:
        tried = [base / name for base in (*bases, run_dir)] + [Path(d) / Path(name).name for d in search]
        found = next((path for path in tried if path.is_file()), None)
        if found is None:
            raise PluginLoadError(f"{run_dir}/recipe.yaml: plugins: {name} not found (looked in "
                                  f"{', '.join(str(t.parent) for t in tried)}); pass its folder with --plugins-dir")
        files.append(found)
    return files


def load_run_plugins(run_dirs: Iterable[str | Path], plugins_dirs: Iterable[str | Path] = ()) -> Plugins:
    """The plugins that made these run folders: builtins, entry points, each run's recipe
    `plugins:` files and `plugins_dirs`, so reports rank a plugin metric by its direction.
    Files listed by several runs (or also in a plugins dir) load once, by file name."""
    plugins_dirs = list(plugins_dirs)
    files: dict[str, Path] = {}
    for run_dir in run_dirs:
        for path in recipe_plugin_files(run_dir, search=plugins_dirs):
            files.setdefault(path.name, path)
    dir_files = [path for directory in plugins_dirs for path in plugin_files_in(directory)]
    return load_plugins([*files.values(), *(p for p in dir_files if p.name not in files)])


def _fill_registries(pm: pluggy.PluginManager) -> dict[str, Registry]:
    registries = {kind: Registry(kind) for kind in KINDS}
    for kind in PLUGIN_KINDS.values():
        hook = getattr(pm.hook, kind.hook)
        register = _Register(registries[kind.name], hook.get_hookimpls())
        # Through pluggy's hook caller, so tryfirst/trylast, wrappers and opt-in arguments
        # work: a plugin's implementation may take any subset of the spec's arguments.
        try:
            hook(register=register)
        finally:
            register.closed = True
    return registries


class _Register:
    """The `register` callback of one hook call. Every name it receives remembers the plugin
    that registered it: pluggy calls the implementations, so the callback finds the caller by
    walking up the stack to the frame of a known implementation (wrappers included)."""

    def __init__(self, registry: Registry, hookimpls) -> None:
        self.registry = registry
        self.closed = False
        self._origins = {}
        for impl in hookimpls:
            code = _code_of(impl.function)
            if code is not None:
                self._origins.setdefault(code, impl.plugin_name)

    def __call__(self, factory: Any, name: str | None = None) -> None:
        if self.closed:
            raise RegistryError(f"register({getattr(factory, '__qualname__', factory)!r}) was called after its "
                                "hook returned; call it inside the hook implementation")
        self.registry.register(factory, origin=self._caller(), name=name)

    def _caller(self) -> str:
        frame = sys._getframe(2)
        while frame is not None:
            origin = self._origins.get(frame.f_code)
            if origin is not None:
                return origin
            frame = frame.f_back
        return "<unknown plugin>"


def _code_of(function: Any):
    function = inspect.unwrap(getattr(function, "__func__", function))
    return getattr(function, "__code__", None)


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
    "Plugins",
    "RegistryError",
    "default_plugins",
    "load_plugins",
    "load_run_plugins",
    "plugin_files_in",
]

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

import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
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
    """A plugin could not be loaded and strict mode is on, a plugin file does not exist, a
    plugin implements a hook that does not exist, or a hook implementation raised."""


class PluginsDirError(PluginLoadError):
    """`--plugins-dir` names no folder of single-file plugins: bad usage, not a bad plugin."""


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


# What marks a folder as a Python package (or a distribution's root), not a folder of plugin files.
PACKAGE_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "__init__.py")


def plugin_files_in(directory: str | Path) -> list[Path]:
    """The single-file plugins of a `--plugins-dir` folder: its `*.py` files, except those
    starting with `_`. A folder that is missing, a package (or a distribution's root) or
    has no plugin file is a PluginsDirError saying what was expected."""
    directory = Path(directory)
    if not directory.exists():
        raise PluginsDirError(f"--plugins-dir {directory}: no such folder")
    if not directory.is_dir():
        raise PluginsDirError(f"--plugins-dir {directory}: not a folder; give the folder that holds the plugin "
                              f".py files (one file can be listed in a recipe's `plugins:`)")
    markers = [name for name in PACKAGE_MARKERS if (directory / name).is_file()]
    if markers:
        raise PluginsDirError(f"--plugins-dir {directory}: {_package_advice(directory, markers)}")
    files = sorted(p for p in directory.glob("*.py") if not p.name.startswith("_") and p.is_file())
    if not files:
        packages = sorted(p.name for p in directory.iterdir()
                          if p.is_dir() and any((p / name).is_file() for name in PACKAGE_MARKERS))
        inside = (f"; it holds the package(s) {', '.join(packages)}: `pip install -e` a package instead"
                  if packages else "")
        raise PluginsDirError(f"--plugins-dir {directory}: no plugin files (*.py not starting with '_') in it{inside}")
    return files


def _package_advice(directory: Path, markers: list[str]) -> str:
    """What to do with a package folder given as `--plugins-dir`."""
    expected = (f"a Python package (it has {' and '.join(markers)}), but --plugins-dir expects a folder of "
                "single-file .py plugins")
    dists = [d for d in (directory, directory.parent)
             if any((d / name).is_file() for name in ("pyproject.toml", "setup.py", "setup.cfg"))]
    if dists:
        return (f"{expected}; install the package with `pip install -e {dists[0]}` (its `arkd_bench` "
                "entry point makes every command see it)")
    return (f"{expected}; list {directory / '__init__.py'} in a recipe's `plugins:`, or give the package a "
            "pyproject.toml with an `arkd_bench` entry point and `pip install -e` it (`arkd-bench new-plugin` writes one)")


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
            # An installed plugin the user did not name on this command line must not stop every
            # command: whatever is wrong with it (import error, bad hook) skips it, unless strict.
            try:
                plugin = ep.load()
                _register(pm, plugin, ep.name, f"entry point {ep.value}")
                _check_marked(pm, ep.name, plugin, f"entry point {ep.value}")
            except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() must not end the command
                if pm.get_plugin(ep.name) is not None:
                    pm.unregister(name=ep.name)
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
            plugin = _import_file(path)
            _register(pm, plugin, name, str(path))
        except PluginLoadError:
            raise
        except (Exception, SystemExit) as exc:
            failed(name, str(path), exc)
        else:
            _check_marked(pm, name, plugin, str(path))

    _check_hook_names(pm)
    pm.check_pending()
    return Plugins(pm=pm, registries=_fill_registries(pm), failures=failures)


def _where(function: Any, fallback: str = "") -> str:
    """`file:line` of a function's definition (the file alone when it has no code)."""
    code = _code_of(function)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else fallback


def _register(pm: pluggy.PluginManager, plugin: Any, name: str, source: str) -> None:
    """pm.register, with pluggy's multi-line refusal of a bad hook implementation (arguments
    the hook does not pass, a wrong wrapper) as one line naming the file and line."""
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        found = re.search(r"for hook '(\w+)'", str(exc))
        hook = found.group(1) if found else None
        where = _where(getattr(plugin, hook, None), source) if hook else source
        caller = getattr(pm.hook, hook, None) if hook else None
        extra = re.search(r"Argument\(s\) (\{.*?\}) are declared", str(exc))
        if extra and caller is not None and caller.spec is not None:
            text = (f"{hook} takes {extra.group(1)}, which the hook does not pass; a hook implementation takes "
                    f"only the hook's arguments ({', '.join(caller.spec.argnames)}), e.g. `def {hook}(register):`")
        else:
            text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise PluginLoadError(f"{where}: plugin {name!r}: {text}") from None


def _hook_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(name for name, caller in vars(pm.hook).items() if not name.startswith("_") and caller.has_spec())


def _check_hook_names(pm: pluggy.PluginManager) -> None:
    """A hook implementation whose name is no hook (a typo) would register nothing: say which
    file, which name and which hook was meant, in one line (pluggy's check_pending would
    raise too, naming the module object)."""
    hooks = _hook_names(pm)
    for name, caller in vars(pm.hook).items():
        if name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            close = difflib.get_close_matches(name, hooks, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"the hooks are: {', '.join(hooks)}"
            raise PluginLoadError(f"{_where(impl.function, impl.plugin_name)}: plugin {impl.plugin_name!r} implements "
                                  f"{name!r}, which is not an arkd-bench hook; {hint}")


def _check_marked(pm: pluggy.PluginManager, name: str, plugin: Any, source: str) -> None:
    """A function named like a hook but without `@hookimpl` is silently ignored by pluggy."""
    for attr in sorted(set(dir(plugin)) & set(_hook_names(pm))):
        function = getattr(plugin, attr, None)
        if callable(function) and pm.parse_hookimpl_opts(plugin, attr) is None:
            raise PluginLoadError(f"{_where(function, source)}: plugin {name!r} defines {attr} without "
                                  "`@hookimpl`, so it is never called; decorate it with `@arkd_bench.hookimpl` "
                                  "(from arkd_bench import hookimpl)")


def _fill_registries(pm: pluggy.PluginManager) -> dict[str, Registry]:
    registries = {kind: Registry(kind) for kind in KINDS}
    for kind in PLUGIN_KINDS.values():
        hook = getattr(pm.hook, kind.hook)
        register = _Register(registries[kind.name], hook.get_hookimpls())
        # Through pluggy's hook caller, so tryfirst/trylast, wrappers and opt-in arguments
        # work: a plugin's implementation may take any subset of the spec's arguments.
        try:
            hook(register=register)
        except RegistryError:
            raise
        except Exception as exc:  # a bug in a hook implementation: one line naming where it is
            raise PluginLoadError(register.describe_failure(kind.hook, exc)) from exc
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
        origin, frame = self._caller()
        where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
        self.registry.register(factory, origin=origin, name=name, where=where)

    def _caller(self):
        """The plugin calling register, and its hook implementation's frame."""
        frame = sys._getframe(2)
        while frame is not None:
            origin = self._origins.get(frame.f_code)
            if origin is not None:
                return origin, frame
            frame = frame.f_back
        return "<unknown plugin>", None

    def describe_failure(self, hook: str, exc: BaseException) -> str:
        """`file:line: plugin 'x' failed in `hook`: Error: message`, at the innermost line of
        the plugin's hook implementation the traceback went through."""
        origin, where = "<unknown plugin>", ""
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code in self._origins:
                origin = self._origins[tb.tb_frame.f_code]
                where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}: "
            tb = tb.tb_next
        return f"{where}plugin {origin!r} failed in `{hook}`: {type(exc).__name__}: {exc}"


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
    "PluginsDirError",
    "Plugins",
    "RegistryError",
    "default_plugins",
    "load_plugins",
    "plugin_files_in",
]

"""Filling the registries: each kind's hook is called once, through pluggy's hook caller (so
tryfirst/trylast, wrappers and opt-in arguments work), with a `register` callback that
files every class under the plugin that registered it."""
from __future__ import annotations

import sys
from typing import Any

import pluggy

from arkd_bench.plugins.checks import code_of
from arkd_bench.plugins.errors import PluginLoadError
from arkd_bench.plugins.kinds import KINDS, PLUGIN_KINDS
from arkd_bench.plugins.registry import Registry, RegistryError

UNKNOWN = "<unknown plugin>"


def fill_registries(pm: pluggy.PluginManager) -> dict[str, Registry]:
    registries = {kind: Registry(kind) for kind in KINDS}
    for kind in PLUGIN_KINDS.values():
        hook = getattr(pm.hook, kind.hook)
        register = Register(registries[kind.name], hook.get_hookimpls())
        try:
            hook(register=register)
        except RegistryError:
            raise
        except Exception as exc:  # a bug in a hook implementation: one line naming where it is
            raise PluginLoadError(register.describe_failure(kind.hook, exc)) from exc
        finally:
            register.closed = True
    return registries


class Register:
    """The `register` callback of one hook call. pluggy names the plugin of each hook
    implementation (`HookImpl.plugin_name`); a name is filed under the implementation whose
    code calls `register` (or, for a helper function, the plugin whose file holds it)."""

    def __init__(self, registry: Registry, hookimpls: list[pluggy.HookImpl]) -> None:
        self.registry = registry
        self.closed = False
        self._by_code: dict[Any, str] = {}
        by_file: dict[str, set[str]] = {}
        for impl in hookimpls:
            code = code_of(impl.function)
            if code is not None:
                self._by_code.setdefault(code, impl.plugin_name)
                by_file.setdefault(code.co_filename, set()).add(impl.plugin_name)
        # a file shared by several plugins (objects of one module) names none of them
        self._by_file = {file: next(iter(names)) for file, names in by_file.items() if len(names) == 1}

    def __call__(self, factory: Any, name: str | None = None) -> None:
        if self.closed:
            raise RegistryError(f"register({getattr(factory, '__qualname__', factory)!r}) was called after its "
                                "hook returned; call it inside the hook implementation")
        caller = sys._getframe(1)  # the line that called register, for errors that name it
        code = caller.f_code
        origin = self._by_code.get(code) or self._by_file.get(code.co_filename, UNKNOWN)
        self.registry.register(factory, origin=origin, name=name, where=f"{code.co_filename}:{caller.f_lineno}")

    def describe_failure(self, hook: str, exc: BaseException) -> str:
        """`file:line: plugin 'x' failed in `hook`: Error: message`, at the innermost line of
        a hook implementation the traceback went through."""
        origin, where = UNKNOWN, ""
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code in self._by_code:
                origin = self._by_code[tb.tb_frame.f_code]
                where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}: "
            tb = tb.tb_next
        return f"{where}plugin {origin!r} failed in `{hook}`: {type(exc).__name__}: {exc}"

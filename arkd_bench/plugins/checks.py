"""Hook implementations pluggy would refuse, or silently ignore, said in one line naming the
file and line: arguments the hook does not pass, a hook name with a typo, a hook function
without `@hookimpl`."""
from __future__ import annotations

import difflib
import inspect
import re
from typing import Any

import pluggy

from arkd_bench.plugins.errors import PluginLoadError


def code_of(function: Any):
    """The code object of a function (unwrapped; a bound method's function), or None."""
    function = inspect.unwrap(getattr(function, "__func__", function))
    return getattr(function, "__code__", None)


def where(function: Any, fallback: str = "") -> str:
    """`file:line` of a function's definition (the fallback when it has no code)."""
    code = code_of(function)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else fallback


def refusal(pm: pluggy.PluginManager, exc: pluggy.PluginValidationError, name: str, source: str) -> PluginLoadError:
    """pluggy's multi-line refusal of a bad hook implementation (arguments the hook does not
    pass, a wrong wrapper) as one line naming the file and line."""
    found = re.search(r"for hook '(\w+)'", str(exc))
    hook = found.group(1) if found else None
    where_ = where(getattr(exc.plugin, hook, None), source) if hook else source
    caller = getattr(pm.hook, hook, None) if hook else None
    extra = re.search(r"Argument\(s\) (\{.*?\}) are declared", str(exc))
    if extra and caller is not None and caller.spec is not None:
        text = (f"{hook} takes {extra.group(1)}, which the hook does not pass; a hook implementation takes "
                f"only the hook's arguments ({', '.join(caller.spec.argnames)}), e.g. `def {hook}(register):`")
    else:
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return PluginLoadError(f"{where_}: plugin {name!r}: {text}")


def register_checked(pm: pluggy.PluginManager, plugin: Any, name: str, source: str) -> None:
    """pm.register, refusing a bad hook implementation in one line (see `refusal`)."""
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise refusal(pm, exc, name, source) from None


def hook_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(name for name, caller in vars(pm.hook).items() if not name.startswith("_") and caller.has_spec())


def check_hook_names(pm: pluggy.PluginManager) -> None:
    """A hook implementation whose name is no hook (a typo) would register nothing: say which
    file, which name and which hook was meant, in one line (pluggy's check_pending would
    raise too, naming the module object)."""
    hooks = hook_names(pm)
    for name, caller in vars(pm.hook).items():
        if name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            close = difflib.get_close_matches(name, hooks, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"the hooks are: {', '.join(hooks)}"
            raise PluginLoadError(f"{where(impl.function, impl.plugin_name)}: plugin {impl.plugin_name!r} implements "
                                  f"{name!r}, which is not an arkd-bench hook; {hint}")


def check_marked(pm: pluggy.PluginManager, name: str, plugin: Any, source: str) -> None:
    """A function named like a hook but without `@hookimpl` is silently ignored by pluggy."""
    for attr in sorted(set(dir(plugin)) & set(hook_names(pm))):
        function = getattr(plugin, attr, None)
        if callable(function) and pm.parse_hookimpl_opts(plugin, attr) is None:
            raise PluginLoadError(f"{where(function, source)}: plugin {name!r} defines {attr} without "
                                  "`@hookimpl`, so it is never called; decorate it with `@arkd_bench.hookimpl` "
                                  "(from arkd_bench import hookimpl)")

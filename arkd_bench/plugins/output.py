"""What a plugin returns is checked where the harness receives it: a weighting's weights, a
divergence's per-token values, a metric's per-example scores, a data policy's sequences and
batches. Anything outside the kind's contract fails the cell with a `PluginOutputError`
naming the plugin, the file and line of the method that returned it, the method, the step
when there is one, and what was wrong. The checks are cheap enough to run every step for
builtins too (at most one device synchronisation per training micro-batch)."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from arkd_bench.plugins.kinds import PLUGIN_KINDS


class PluginOutputError(ValueError):
    """A plugin returned something outside its kind's contract (a wrong shape, NaN, a negative
    weight, a token id outside the vocabulary). The runner records it as the cell's failure
    (status `failed`, this message as the error) and goes on with the other cells.

    `kind`, `name`, `plugin` (the class), `method`, `step` and `problem` say what and where."""

    def __init__(self, kind: str, name: str, plugin: type, method: str, problem: str, *,
                 step: int | None = None) -> None:
        self.kind, self.name, self.plugin, self.method = kind, name, plugin, method
        self.problem, self.step = problem, step
        at = "" if step is None else f" at step {step}"
        guide = PLUGIN_KINDS[kind].guide if kind in PLUGIN_KINDS else None
        super().__init__(f"{kind} plugin {name!r} ({where(plugin, method)}) returned a bad value from "
                         f"{method}(){at}: {problem}" + (f"; see {guide}" if guide else ""))


def where(plugin: type, method: str | None = None) -> str:
    """`Class.method in /path/file.py:line` of the code that produced a value: the method's own
    line when it can be found, else the class's file."""
    cls = plugin if isinstance(plugin, type) else type(plugin)
    label = cls.__qualname__ + (f".{method}" if method else "")
    function = inspect.unwrap(getattr(cls, method, None)) if method else None
    code = getattr(function, "__code__", None)
    if code is not None:
        return f"{label} in {code.co_filename}:{code.co_firstlineno}"
    try:
        return f"{label} in {inspect.getsourcefile(cls) or inspect.getfile(cls)}"
    except (TypeError, OSError):  # a class without a file (built in a REPL or by exec)
        return f"{label} in module {cls.__module__}"


def name_of(plugin: Any) -> str:
    """A plugin's registered name as it declares it (`name`), else its class name."""
    cls = plugin if isinstance(plugin, type) else type(plugin)
    return getattr(cls, "name", None) or cls.__qualname__


def check_on_return(cls: type, method: str, check: Callable[..., None]) -> None:
    """Wrap `cls.method`, when `cls` defines it itself, so that `check(self, result, *args,
    **kwargs)` sees every value it returns. For base classes whose methods are called from code
    the kind's plugins never see (the fused divergence pass, the grid's sequence builder): the
    check then holds wherever the method is called. Each definition is wrapped once."""
    function = cls.__dict__.get(method)
    if (not inspect.isfunction(function)  # absent, or a static/class method: left as it is
            or getattr(function, "_checked_output", False)):
        return

    @functools.wraps(function)
    def checked(plugin, *args, **kwargs):  # not `self`: failures are named by the error, not the frame
        result = function(plugin, *args, **kwargs)
        check(plugin, result, *args, **kwargs)
        return result

    checked._checked_output = True
    setattr(cls, method, checked)

"""What a run does when something outside a cell's own logic goes wrong: a plugin raises, the
process is asked to stop, the disk fills up. Each is turned into a clear outcome: the cell
fails with a message naming the culprit, or the run stops with finished cells intact."""
from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from arkd_bench.plugin_output import PluginOutputError

INTERRUPTED = "interrupted"  # status of the cell a stopped run was working on: unfinished, redone on rerun


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: stop after marking the current cell unfinished."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class RunAborted(Exception):
    """The run cannot go on (e.g. even a cell's failure cannot be recorded); finished cells stay."""


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise RunInterrupted in the main thread for the duration."""
    def handler(signum, frame):
        raise RunInterrupted(signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def describe_failure(exc: BaseException, plugins) -> str:
    """`Type: message`, prefixed with the plugin and method it came from when a method of a
    registered plugin class is on the failing stack (the innermost such call is named). A
    plugin's bad return value (PluginOutputError) names the plugin itself; the plugin that
    registered it is added."""
    message = f"{type(exc).__name__}: {exc}"
    if plugins is None:
        return message
    classes = {entry.factory: entry for entry in plugins.entries() if isinstance(entry.factory, type)}
    if isinstance(exc, PluginOutputError):  # it names the plugin, its file and the method itself
        entry = next((classes[cls] for cls in exc.plugin.__mro__ if cls in classes), None)
        return message if entry is None else f"{message} (registered by plugin {entry.origin!r})"
    culprit = None
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        for cls in type(owner).__mro__ if owner is not None else ():
            if cls in classes:
                culprit = (classes[cls], tb.tb_frame.f_code.co_name)
                break
        tb = tb.tb_next
    if culprit is None:
        return message
    entry, method = culprit
    return f"{entry.kind} plugin {entry.name!r} (from {entry.origin}) raised in {method}(): {message}"

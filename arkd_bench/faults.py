"""What a run does when something outside a cell's own logic goes wrong: a plugin raises, the
process is asked to stop, the disk fills up. Each is turned into a clear outcome: the cell
fails with a message naming the culprit, or the run stops with finished cells intact."""
from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from arkd_bench.plugins.output import PluginOutputError

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


FINISHED = ("done", "failed")  # a rerun skips a done cell and retries a failed one
REPORTS = ("results.json", "leaderboard.md", "report.html")  # as report.write.write_run_reports writes them


def run_folder_state(out: Path, cell_ids: Sequence[str]) -> tuple[list[str | None], bool]:
    """The status of each cell in `out` (None: never started) and whether the reports are newer
    than every cell status, i.e. were written after the last cell finished."""
    from arkd_bench.rundir.store import RunDir

    rundir = RunDir(out, writable=False)
    statuses = [(rundir.status(cell_id) or {}).get("status") for cell_id in cell_ids]
    stamps = [p.stat().st_mtime_ns for p in (rundir.cell_dir(c) / "status.json" for c in cell_ids) if p.exists()]
    try:
        written = [(out / name).stat().st_mtime_ns for name in REPORTS]
    except OSError:
        return statuses, False
    return statuses, min(written) >= max(stamps, default=0)


def interruption_message(signal_name: str, out: Path | None, statuses: Sequence[str | None] | None,
                         reports_written: bool = False) -> str:
    """What a stopped run leaves in its run folder, in one line: nothing to resume, every cell
    finished (with or without the reports), or some cells finished and the rest to resume.
    `statuses` is each cell's status in the folder (None: not started), or None when the cells
    were not known yet (stopped while the recipe was checked)."""
    if statuses is None or all(status is None for status in statuses):
        return f"interrupted by {signal_name} before any cell ran; nothing to resume"
    finished = [s for s in statuses if s in FINISHED]
    if len(finished) == len(statuses):
        failed = finished.count("failed")
        counts = f"{len(finished) - failed} done, {failed} failed" if failed else f"{len(finished)} done"
        if reports_written:
            return (f"interrupted by {signal_name} after all {len(statuses)} cells finished ({counts}); "
                    f"reports written: {out / REPORTS[1]}")
        retried = " and failed ones retried" if failed else ""
        return (f"interrupted by {signal_name} after all {len(statuses)} cells finished ({counts}) in {out}; "
                f"reports not written: run the same command again to write them (finished cells are "
                f"skipped{retried})")
    unfinished = len(statuses) - len(finished)
    running = " (the one that was running is marked unfinished)" if INTERRUPTED in statuses else ""
    kept = f"{len(finished)} of {len(statuses)} cells finished, kept in {out}" if finished else "no cell finished yet"
    return (f"stopped by {signal_name}: {kept}; {unfinished} not finished{running}; "
            "run the same command again to resume")


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

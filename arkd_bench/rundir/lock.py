"""An exclusive lock on a folder that says who holds it.

`FolderLock(folder).acquire()` takes an advisory `flock` on `folder/.lock` and writes the
holder (pid, host, start time, command line) into it. The kernel releases the lock when
its process dies, however it dies, so a lock left by a dead process is simply taken over
(`acquire` returns what the dead holder had written, to report it). A live holder makes
`acquire` raise `LockHeld`, whose message names it. `waiting_lock(file)` is the blocking kind,
for work that the second process should wait for rather than refuse.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_FILE = ".lock"


class LockHeld(Exception):
    """Another live process holds the lock; the message names it."""


def describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "a process that did not record itself"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return (f"pid {info.get('pid')} on {info.get('host')} (started {started}: "
            f"{' '.join(info.get('argv') or []) or '?'})")


def _read(handle) -> dict[str, Any] | None:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "null")
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


class FolderLock:
    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._handle = None

    def acquire(self) -> dict[str, Any] | None:
        """Take the lock; returns the record of a dead previous holder that it replaced, if any."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Open without truncating: the live holder's record must survive our failed attempt.
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(handle)
            handle.close()
            raise LockHeld(f"{self.path.parent} is in use by another run: {describe_holder(holder)}; "
                           f"wait for it to finish, or use another --out folder") from None
        stale = _read(handle)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                                 "argv": sys.argv}))
        handle.flush()
        self._handle = handle
        return stale

    def release(self) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.close()
            self._handle = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def waiting_lock(path: str | Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive `flock` on the file `path`, waiting for a live holder to let go.

    For work that others may start at the same moment (two shards of one grid building the
    same cache entry): the second waits, then finds the first one's result. `on_wait` is told
    who holds the lock before the wait starts. The holder's record is written as FolderLock's.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(describe_holder(_read(handle)))
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                                 "argv": sys.argv}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()  # closing the file releases the flock

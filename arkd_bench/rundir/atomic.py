"""Writes that are all or nothing: a reader (or a rerun after a crash, a kill or a full disk)
sees the old file or the new one, never half of one.

- `atomic_write_text` / `atomic_write_bytes` for content in memory;
- `atomic_path(path)` for writers that want a file name (torch.save, np.save, save_pretrained
  of one file): write to the yielded temporary path, and it is renamed into place on success
  and removed on any error.

A full disk (or quota) raises `DiskFullError`, an OSError whose message names the file, and
leaves no temporary file behind.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left (or quota exceeded) while writing a file; nothing partial was left."""


def _shared_mode(path: str) -> None:
    # mkstemp makes 0600 files; outputs are meant to be shared like any other file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _no_space(exc: OSError, path: Path) -> OSError:
    if exc.errno in NO_SPACE:
        return DiskFullError(exc.errno, f"no space left on the device while writing {path} "
                                        f"({exc.strerror}); nothing partial was kept")
    return exc


@contextmanager
def atomic_path(path: Path, mode_shared: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if mode_shared:
            _shared_mode(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _no_space(exc, path) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")

"""The run folder: one sub-folder per cell, atomic writes, resume, a lock.

RUNDIR/
  recipe.yaml            the recipe, byte for byte
  run.json               recipe name, `recipe_path` (absolute), cells in grid order, `plugins`
                         (one record per plugin file: name, copy, source, sha256, what it
                         registers) and `datasets` (source and resolved local files)
  plugins/               copies of the run's plugin files (rundir.plugin_files), so report
                         and check work from any directory and on a moved folder
  cells/<cell id>/       cell.json (config), status.json, scores.json,
                         generations.jsonl, train_log.jsonl, provenance.json
  results.json, leaderboard.md
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from arkd_bench.rundir.atomic import atomic_write_json, atomic_write_text  # noqa: F401 - re-exported

CELL_ID = re.compile(r"^[0-9a-f]{12}$")
DONE, FAILED, RUNNING = "done", "failed", "running"


class RunDirError(Exception):
    pass


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in records))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class RunDir:
    """A run folder. With several processes only the main one is `writable`; the others
    read the same folder, so they agree on which cells are finished."""

    def __init__(self, path: str | Path, writable: bool = True) -> None:
        self.path = Path(path)
        self.writable = writable
        self._lock_handle = None

    # -- locking ------------------------------------------------------------
    def lock(self) -> dict[str, Any] | None:
        """Refuse a second run writing into the same folder at the same time, naming the
        live holder; returns the record of a dead holder whose lock was taken over."""
        from arkd_bench.rundir.lock import FolderLock, LockHeld

        if not self.writable:
            return None
        self._lock_handle = FolderLock(self.path)
        try:
            return self._lock_handle.acquire()
        except LockHeld as exc:
            self._lock_handle = None
            raise RunDirError(str(exc)) from None

    def unlock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.release()
            self._lock_handle = None

    # -- cells --------------------------------------------------------------
    def cell_dir(self, cell_id: str) -> Path:
        # Ids are hex content hashes; anything else could name a path outside the run.
        if not CELL_ID.match(cell_id):
            raise RunDirError(f"invalid cell id {cell_id!r}")
        return self.path / "cells" / cell_id

    def status(self, cell_id: str) -> dict[str, Any] | None:
        path = self.cell_dir(cell_id) / "status.json"
        try:
            return read_json(path)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def is_done(self, cell_id: str) -> bool:
        """Finished and intact: status says done and its scores can be read."""
        status = self.status(cell_id)
        if not status or status.get("status") != DONE:
            return False
        try:
            read_json(self.cell_dir(cell_id) / "scores.json")
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return True

    def set_status(self, cell_id: str, status: str, **extra: Any) -> None:
        if not self.writable:
            return
        atomic_write_json(self.cell_dir(cell_id) / "status.json", {"status": status, **extra})

    def write(self, cell_id: str, name: str, obj: Any) -> None:
        if not self.writable:
            return
        path = self.cell_dir(cell_id) / name
        if name.endswith(".jsonl"):
            write_jsonl(path, obj)
        else:
            atomic_write_json(path, obj)

    def read(self, cell_id: str, name: str) -> Any:
        path = self.cell_dir(cell_id) / name
        return read_jsonl(path) if name.endswith(".jsonl") else read_json(path)

    def cell_ids(self) -> list[str]:
        cells = self.path / "cells"
        if not cells.is_dir():
            return []
        return sorted(p.name for p in cells.iterdir() if CELL_ID.match(p.name))

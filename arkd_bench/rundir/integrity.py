"""Recorded hashes for cached artifacts, so a truncated or altered entry is detected and
rebuilt rather than used.

A cache writes `write_manifest(folder)` as the last step of a build (the manifest's presence
is what marks the entry finished) and calls `verify_manifest(folder)` before using it:
None means every recorded file is there with its recorded size and sha256.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = ".complete"


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path) -> dict[str, dict]:
    """Record size and sha256 of every file under `folder` in `folder/.complete` (atomically)."""
    from arkd_bench.rundir.atomic import atomic_write_text

    entries = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
               for p in _files(folder)}
    atomic_write_text(folder / MANIFEST, json.dumps({"version": 1, "files": entries}, indent=1) + "\n")
    return entries


def verify_manifest(folder: Path) -> str | None:
    """Why the entry in `folder` cannot be trusted, or None when it matches its manifest.

    Sizes are compared first (cheap: catches truncation), then hashes. A file that is not in
    the manifest counts too: nothing was meant to be added after the build.
    """
    try:
        recorded = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return "unfinished (no manifest)"
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable record of its hashes (written by an older version, or damaged)"
    present = {p.relative_to(folder).as_posix(): p for p in _files(folder)}
    for name, entry in recorded.items():
        path = present.pop(name, None)
        if path is None:
            return f"{name} is missing"
        size = path.stat().st_size
        if size != entry.get("size"):
            return f"{name} has {size} bytes, {entry.get('size')} recorded (truncated or rewritten)"
    if present:
        return f"{sorted(present)[0]} was not part of the entry when it was built"
    for name, entry in recorded.items():
        if sha256_file(folder / name) != entry.get("sha256"):
            return f"{name} does not match its recorded sha256 (corrupted)"
    return None

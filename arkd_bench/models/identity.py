"""What a model or tokenizer *is*, by content: the identity every cache key built from it follows.

A recipe names a model by a path or a hub name; the same name can hold other weights tomorrow
(a local folder overwritten, an unpinned hub repo that moved, another GGUF file installed).
Keys built from the name alone would then hand back teacher outputs, SFT checkpoints and SeqKD
sequences of the old weights. So every source a run reads has an identity of its content:

    local folder   sha256 of each file `from_pretrained` reads (weights, configs, tokenizer
                   files, remote code), top level only (no checkpoint sub-folders)
    hub repo       the commit the revision resolves to (asked of the hub when online, else read
                   from the local Hugging Face cache), which the model is then loaded at
    GGUF file      the file's sha256
    scratch        none needed: the spec (architecture, config, init seed) is in every key and
                   the model is built deterministically from it

Hashing a file of hundreds of MB every run would cost seconds, so `FileHashes` memoises each
file's sha256 in a small JSON index in the cache folder, under (resolved path, size,
mtime_ns, ctime_ns, inode, device): a file is hashed again only when one of them changed, and
a file changed within `RACY_NS` of being hashed is not memoised (a write in the same
timestamp tick would not change its stamp).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INDEX_FILE = "file_hashes.json"
INDEX_VERSION = 1
RACY_NS = 2_000_000_000  # files changed this recently are hashed but not memoised
# What `from_pretrained` reads from a model folder: weights, configs and index files, tokenizer
# files, remote code. Not optimizer states, not checkpoint sub-folders, not READMEs.
MODEL_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".py", ".jinja", ".tiktoken")
# What `AutoTokenizer.from_pretrained` reads (config.json included: it names the tokenizer class).
TOKENIZER_SUFFIXES = (".json", ".txt", ".model", ".py", ".jinja", ".tiktoken", ".bpe")
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class FileHashes:
    """sha256 of files, memoised in `index` (a JSON file; None: in this process only)."""

    def __init__(self, index: str | Path | None = None) -> None:
        self.index = Path(index) if index is not None else None
        self._entries: dict[str, dict[str, Any]] | None = None
        self._session: dict[str, dict[str, Any]] = {}  # this process's hashes, racy files included
        self.hashed = 0  # files read and hashed
        self.hashed_bytes = 0
        self.hash_seconds = 0.0
        self.reused = 0  # files whose memoised hash was still valid

    def sha256(self, path: str | Path) -> str:
        real = Path(path).resolve()
        stamp = _stamp(real.stat())
        entries = self._load()
        for entry in (self._session.get(str(real)), entries.get(str(real))):
            if entry is not None and entry.get("stamp") == stamp:
                self.reused += 1
                return entry["sha256"]
        started = time.time_ns()
        digest = file_sha256(real)
        self.hashed += 1
        self.hashed_bytes += stamp[0]
        self.hash_seconds += (time.time_ns() - started) / 1e9
        if _stamp(real.stat()) != stamp:
            return digest  # written while it was read: nothing to memoise
        self._session[str(real)] = {"stamp": stamp, "sha256": digest}
        if max(stamp[1], stamp[2]) < started - RACY_NS:
            self._remember(str(real), {"stamp": stamp, "sha256": digest})
        return digest

    def stats(self) -> dict[str, Any]:
        return {"hashed": self.hashed, "hashed_mb": round(self.hashed_bytes / 2**20, 1),
                "hash_seconds": round(self.hash_seconds, 3), "reused": self.reused}

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, dict[str, Any]]:
        if self.index is None:
            return {}
        try:
            data = json.loads(self.index.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # absent or damaged: every file is hashed again, nothing is trusted
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
            return {}
        files = data.get("files")
        return files if isinstance(files, dict) else {}

    def _remember(self, key: str, entry: dict[str, Any]) -> None:
        self._load()[key] = entry
        if self.index is None:
            return

        def update(data: dict[str, Any]) -> dict[str, Any]:
            files = data.get("files") if data.get("version") == INDEX_VERSION else None
            kept = {k: v for k, v in (files if isinstance(files, dict) else {}).items() if os.path.exists(k)}
            return {"version": INDEX_VERSION, "files": {**kept, key: entry}}

        # other runs sharing the cache may have added entries since: merged under a lock
        merged = update_json(self.index, update)
        if merged is not None:
            self._entries = merged["files"]


def update_json(path: Path, update) -> dict[str, Any] | None:
    """Replace the JSON object in `path` by `update(current)` (current: {} when absent or
    damaged), atomically and under a lock beside it (`.locks/<name>.lock`), so runs sharing the
    folder never lose each other's updates. Returns what was written; None when the folder
    cannot be written (a read-only or full cache: the caller's answer is still right, only
    not remembered)."""
    from arkd_bench.rundir.atomic import atomic_write_json
    from arkd_bench.rundir.lock import waiting_lock

    try:
        with waiting_lock(path.parent / ".locks" / f"{path.name}.lock"):
            try:
                current = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                current = {}
            new = update(current if isinstance(current, dict) else {})
            atomic_write_json(path, new)
            return new
    except OSError:
        return None


@dataclass(frozen=True)
class SourceIdentity:
    """The content identity of one source: `label` says where it is (the key of its history),
    `sha256` what it holds now; `files` the per-file hashes (or the resolved commit) behind it."""

    label: str
    sha256: str
    files: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"label": self.label, "sha256": self.sha256, "files": dict(self.files)}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def folder_files(folder: Path, suffixes: Iterable[str], exclude: Iterable[str] = ()) -> list[Path]:
    suffixes, exclude = tuple(suffixes), tuple(exclude)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.endswith(suffixes)
                  and not p.name.endswith(exclude))


def folder_identity(folder: str | Path, hashes: FileHashes, *, what: str = "model",
                    suffixes: Iterable[str] = MODEL_SUFFIXES, exclude: Iterable[str] = ()) -> SourceIdentity:
    folder = Path(folder).expanduser().resolve()
    files = {p.name: hashes.sha256(p) for p in folder_files(folder, suffixes, exclude)}
    return SourceIdentity(f"{what} folder {folder}", _digest(files), files)


def gguf_identity(path: str | Path, hashes: FileHashes) -> SourceIdentity:
    path = Path(path).resolve()
    digest = hashes.sha256(path)
    return SourceIdentity(f"GGUF file {path}", digest, {path.name: digest})


def resolve_commit(repo: str, revision: str | None) -> str | None:
    """The commit `revision` (default: main) of hub repo `repo` resolves to: asked of the hub
    when it is reachable, else read from the local Hugging Face cache; None if neither knows."""
    from huggingface_hub import constants

    rev = revision or "main"
    if not constants.HF_HUB_OFFLINE:
        try:
            from huggingface_hub import HfApi

            sha = HfApi().model_info(repo, revision=rev, timeout=10).sha
            if sha:
                return sha
        except Exception:  # noqa: BLE001 - unreachable hub, private repo: use the local cache
            pass
    try:
        from huggingface_hub.file_download import repo_folder_name

        cached = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")
    except Exception:  # noqa: BLE001 - not a valid repo id
        return None
    if COMMIT.match(rev):
        return rev if (cached / "snapshots" / rev).is_dir() else None
    ref = cached / "refs" / rev
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if COMMIT.match(commit) else None


def hub_identity(repo: str, revision: str | None, *, what: str = "model") -> SourceIdentity:
    commit = resolve_commit(repo, revision)
    detail = {"repo": repo, "revision": revision or "main", "commit": commit or "unresolved"}
    return SourceIdentity(f"{what} hub repo {repo}@{revision or 'main'}", _digest(detail), detail)


def local_folder(path: str) -> Path | None:
    """The folder `from_pretrained(path)` reads, or None when `path` names a hub repo."""
    for candidate in (Path(path), Path(path).expanduser()):
        if candidate.is_dir():
            return candidate
    return None


def path_identity(path: str, revision: str | None, hashes: FileHashes, *, what: str = "model") -> SourceIdentity:
    """A `path:` source: a local folder's files, or a hub repo's resolved commit."""
    folder = local_folder(path)
    if folder is None:
        return hub_identity(path, revision, what=what)
    if what == "tokenizer":
        return folder_identity(folder, hashes, what=what, suffixes=TOKENIZER_SUFFIXES, exclude=(".index.json",))
    return folder_identity(folder, hashes, what=what)


def describe_change(old: dict[str, Any], new: SourceIdentity) -> str:
    """`sha256 abc.. -> def..`, with the files that differ (or the commits)."""
    text = f"sha256 {str(old.get('sha256'))[:12]}.. -> {new.sha256[:12]}.."
    before, after = old.get("files") or {}, new.files
    changed = sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))
    if changed:
        parts = [f"{n}: {str(before.get(n, 'absent'))[:12]} -> {str(after.get(n, 'absent'))[:12]}" for n in changed[:6]]
        text += " (" + "; ".join(parts) + (f"; {len(changed) - 6} more" if len(changed) > 6 else "") + ")"
    return text

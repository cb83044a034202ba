"""On-disk cache, by content hash, of what a grid builds, so a grid and its reruns never build
the same thing twice. One folder per kind of entry: trained tokenizers (`tokenizers/`), SFT
teachers and students (`teachers/`, `students/`), teacher log-probs written to disk
(`teacher_outputs/`, for `teacher_outputs: disk` or `topk`), training sequences built by data
policies (`sequences/`) and model folders dequantized from GGUF files (`gguf/`).

Keys follow from the content of the models and tokenizers they are built from (see
`arkd_bench.models.identity`), not from their names, so new weights under an old name make new
keys. The cache remembers, per kind of entry, which content of each source it last built from
(`sources.json`); an entry built anew because a source's content changed is listed under
`rebuilt` with the source, its old and new sha256 and the files that differ."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from arkd_bench.rundir.atomic import NO_SPACE, DiskFullError
from arkd_bench.rundir.integrity import verify_manifest, write_manifest
from arkd_bench.rundir.lock import waiting_lock
from arkd_bench.models.identity import INDEX_FILE, FileHashes, SourceIdentity, describe_change, update_json

LOCKS = ".locks"  # per-entry lock files, kept out of the entries' folders
SOURCES_FILE = "sources.json"  # per kind of entry: the content of each source it was last built from


def default_cache_dir() -> Path:
    root = os.environ.get("ARKD_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "arkd-bench")
    return Path(root)


class ArtifactCache:
    """Folders built once and found again by key: `get_or_build(kind, key, build)`.

    Every entry records the size and sha256 of its files when it is built (see
    `arkd_bench.rundir.integrity`) and is checked against them the first time a run uses
    it: a truncated or corrupted entry is reported, removed and rebuilt, never loaded.
    Any cache of folders (tokenizers, SFT models, teacher outputs, generated sequences,
    dequantized weights) gets this by building through `get_or_build`.
    """

    def __init__(self, root: str | Path, accelerator=None, say: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.accelerator = accelerator
        self.say = say
        self.hits = 0
        self.misses = 0
        # entries built again: found corrupted, or a source they are built from changed
        self.rebuilt: list[dict[str, str]] = []
        self._verified: set[Path] = set()  # hashes are checked once per run, not per use
        self.file_hashes = FileHashes(self.root / INDEX_FILE)  # sha256 of source files, memoised
        self.sources: dict[str, dict[str, Any]] = {}  # label -> identity and roles, every source this run read
        self._history: dict[str, Any] | None = None

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def use_source(self, role: str, identity: SourceIdentity) -> SourceIdentity:
        """Note that this run reads `identity` as `role` (e.g. "teacher 'big'"); see stats()."""
        record = self.sources.setdefault(identity.label, {**identity.record(), "roles": []})
        if role not in record["roles"]:
            record["roles"].append(role)
        return identity

    def get_or_build(self, kind: str, key: str, build: Callable[[Path], None],
                     sources: Mapping[str, SourceIdentity] | None = None) -> Path:
        """Return the folder for (kind, key), calling `build(tmp_folder)` first if it is absent
        or fails its recorded hashes.

        `sources` ({role: identity}) are the models and tokenizers the entry is built from (their
        identities are in `key`). When the entry is absent and one of them has changed since
        the last entry of this kind was built from it, the change is listed under `rebuilt`.

        The folder appears atomically (build in a temp folder, record its hashes, then
        rename), so an interrupted build never leaves a half-written artifact that looks
        finished. With several processes every one of them builds (training is collective)
        and the main process's result is kept.

        Separate runs sharing the cache (shards of one grid on a cluster) are serialised per
        entry by a lock file (under `.locks/`), taken by each run's main process: the second one
        waits, then finds the first one's entry instead of building it again (or replacing
        it while the first one reads it).
        """
        final = self.path(kind, key)
        self._barrier()
        if final in self._verified:
            self.hits += 1
            return final
        with self._entry_lock(kind, key):
            return self._get_or_build_locked(kind, key, final, build, dict(sources or {}))

    @contextmanager
    def _entry_lock(self, kind: str, key: str) -> Iterator[None]:
        """The main process holds `.locks/<kind>/<key>.lock` (outside the entries' folders); the
        others wait at a barrier until it does, so every process checks the entry under the lock."""
        if not self._is_main():
            self._barrier()
            yield
            return

        def waiting(holder: str) -> None:
            if self.say is not None:
                self.say(f"cache entry {self.path(kind, key)} is being built by {holder}; waiting for it")

        with waiting_lock(self.root / LOCKS / kind / f"{key}.lock", on_wait=waiting):
            self._barrier()
            yield

    def _get_or_build_locked(self, kind: str, key: str, final: Path, build: Callable[[Path], None],
                             sources: dict[str, SourceIdentity]) -> Path:
        problem = verify_manifest(final) if final.exists() else "absent"
        self._barrier()  # every process has read the entry before the main one may replace it
        if problem is None:
            self.hits += 1
            self._verified.add(final)
            self._remember_sources(kind, sources)
            return final
        if final.exists():
            self.rebuilt.append({"entry": f"{kind}/{key}", "reason": problem})
            if self.say is not None:
                self.say(f"cache entry {final} is not usable ({problem}); rebuilding it")
        elif self._is_main():
            for change in self._source_changes(kind, sources):
                self.rebuilt.append({"entry": f"{kind}/{key}", **change})
                if self.say is not None:
                    self.say(f"cache entry {kind}/{key} is built anew: {change['reason']}")
        self.misses += 1
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}."))
        try:
            build(tmp)
            if self._is_main():
                write_manifest(tmp)
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise DiskFullError(exc.errno, f"no space left on the device while building cache entry "
                                               f"{final} ({exc.strerror}); the partial entry was removed") from exc
            raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            self._barrier()
        self._verified.add(final)
        self._remember_sources(kind, sources)
        return final

    # -- what each kind of entry was last built from ---------------------------------------
    def _source_history(self) -> dict[str, Any]:
        if self._history is None:
            import json

            try:
                data = json.loads((self.root / SOURCES_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            kinds = data.get("kinds") if isinstance(data, dict) else None
            self._history = kinds if isinstance(kinds, dict) else {}
        return self._history

    def _source_changes(self, kind: str, sources: dict[str, SourceIdentity]) -> list[dict[str, Any]]:
        """Why an absent entry is new, where a source it is built from changed content since the
        last entry of this kind was built from it: [{reason, source, old, new}]."""
        seen = self._source_history().get(kind) or {}
        changes = []
        for role, identity in sources.items():
            old = seen.get(identity.label)
            if isinstance(old, dict) and old.get("sha256") != identity.sha256:
                changes.append({"reason": f"{role} changed since the last {kind} entry was built from it: "
                                          f"{identity.label}: {describe_change(old, identity)}",
                                "source": identity.label, "old": old.get("sha256"), "new": identity.sha256})
        return changes

    def _remember_sources(self, kind: str, sources: dict[str, SourceIdentity]) -> None:
        for role, identity in sources.items():
            self.use_source(role, identity)
        if not self._is_main():
            return
        seen = self._source_history().setdefault(kind, {})
        fresh = {i.label: {"sha256": i.sha256, "files": dict(i.files)} for i in sources.values()
                 if (seen.get(i.label) or {}).get("sha256") != i.sha256}
        if not fresh:
            return
        seen.update(fresh)

        def update(data: dict[str, Any]) -> dict[str, Any]:
            kinds = data.get("kinds") if isinstance(data.get("kinds"), dict) else {}
            kinds[kind] = {**(kinds.get(kind) or {}), **fresh}
            return {"version": 1, "kinds": kinds}

        written = update_json(self.root / SOURCES_FILE, update)
        if written is not None:
            self._history = written["kinds"]

    def _is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def _barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def stats(self) -> dict[str, Any]:
        return {"root": str(self.root), "hits": self.hits, "misses": self.misses, "rebuilt": self.rebuilt,
                "sources": self.sources, "file_hashes": self.file_hashes.stats()}

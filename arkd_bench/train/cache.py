"""On-disk cache of trained tokenizers, SFT teachers and SFT students, by content hash,
so a grid and its reruns never train the same thing twice."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    root = os.environ.get("ARKD_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "arkd-bench")
    return Path(root)


class ArtifactCache:
    def __init__(self, root: str | Path, accelerator=None) -> None:
        self.root = Path(root)
        self.accelerator = accelerator
        self.hits = 0
        self.misses = 0

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def get_or_build(self, kind: str, key: str, build: Callable[[Path], None]) -> Path:
        """Return the folder for (kind, key), calling `build(tmp_folder)` first if absent.

        The folder appears atomically (build in a temp folder, then rename), so an
        interrupted build never leaves a half-written artifact that looks finished.
        With several processes every one of them builds (training is collective) and
        the main process's result is kept.
        """
        final = self.path(kind, key)
        self._barrier()
        if (final / ".complete").exists():
            self.hits += 1
            return final
        self.misses += 1
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}."))
        try:
            build(tmp)
            if self._is_main():
                (tmp / ".complete").write_text("")
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            self._barrier()
        return final

    def _is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def _barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def stats(self) -> dict[str, Any]:
        return {"root": str(self.root), "hits": self.hits, "misses": self.misses}

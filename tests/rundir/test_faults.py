"""Faults during a run: corrupted cache entries, a full disk, a run folder held by another
process, a plugin that raises."""
import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from arkd_bench.faults import describe_failure
from arkd_bench.rundir.atomic import DiskFullError, atomic_path, atomic_write_text
from arkd_bench.rundir.lock import FolderLock, LockHeld
from arkd_bench.rundir.store import RunDir, RunDirError
from arkd_bench.run.cache import ArtifactCache


def counting_build(calls):
    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "weights.bin").write_bytes(bytes(range(256)) * 64)
        (folder / "sub").mkdir()
        (folder / "sub" / "config.json").write_text('{"n": 1}')
    return build


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "extra", "manifest"])
def test_a_damaged_cache_entry_is_detected_and_rebuilt(tmp_path, damage):
    calls = []
    folder = ArtifactCache(tmp_path).get_or_build("models", "k", counting_build(calls))
    original = (folder / "weights.bin").read_bytes()
    assert ArtifactCache(tmp_path).get_or_build("models", "k", counting_build(calls)) == folder
    assert len(calls) == 1  # intact: a hit
    if damage == "truncate":
        (folder / "weights.bin").write_bytes(original[:100])
    elif damage == "flip":  # same size, one byte changed: only the hash can tell
        (folder / "weights.bin").write_bytes(b"\xff" + original[1:])
    elif damage == "delete":
        (folder / "sub" / "config.json").unlink()
    elif damage == "extra":
        (folder / "stray.tmp").write_text("x")
    else:
        (folder / ".complete").write_text("")  # as an older version left it
    said = []
    cache = ArtifactCache(tmp_path, say=said.append)
    assert cache.get_or_build("models", "k", counting_build(calls)) == folder
    assert len(calls) == 2
    assert (folder / "weights.bin").read_bytes() == original
    assert cache.stats()["rebuilt"][0]["entry"] == "models/k" and "rebuilding" in said[0]
    assert ArtifactCache(tmp_path).get_or_build("models", "k", counting_build(calls)) and len(calls) == 2


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "scores.json"
    atomic_write_text(target, "old")
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFullError, match=r"no space left .*scores\.json"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]
    with pytest.raises(DiskFullError):
        with atomic_path(tmp_path / "strategy.pt") as tmp:
            tmp.write_bytes(b"half")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]


def test_a_full_disk_during_a_cache_build_leaves_no_entry(tmp_path):
    def build(folder: Path) -> None:
        (folder / "part").write_bytes(b"x" * 10)
        no_space()

    with pytest.raises(DiskFullError, match="cache entry"):
        ArtifactCache(tmp_path).get_or_build("models", "k", build)
    assert list((tmp_path / "models").iterdir()) == []


HOLD = """
import sys, time
from arkd_bench.rundir.lock import FolderLock
lock = FolderLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"in use by another run: pid {holder.pid} on "):
            RunDir(tmp_path).lock()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    rundir = RunDir(tmp_path)
    stale = rundir.lock()  # the kernel dropped the dead process's lock: taken over
    assert stale["pid"] == holder.pid
    with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        FolderLock(tmp_path).acquire()
    rundir.unlock()
    assert RunDir(tmp_path).lock() is None  # a clean release leaves nothing stale


def test_a_failure_names_the_plugin_and_method_it_came_from():
    import types

    from arkd_bench import hookimpl
    from arkd_bench.testing import registered_plugin
    from arkd_bench.weighting.base import WeightingStrategy

    class Exploding(WeightingStrategy):
        name = "exploding"

        def weights(self, features):
            raise ValueError("boom")

    module = types.ModuleType("exploding_plugin")
    module.arkd_register_weightings = hookimpl(lambda register: register(Exploding))
    with registered_plugin(module) as plugins:
        strategy = plugins.create("weighting", "exploding", terms=["fkl"])
        try:
            strategy.weights(None)
        except ValueError as exc:
            message = describe_failure(exc, plugins)
    assert message.startswith("weighting plugin 'exploding' (from ")
    assert message.endswith("raised in weights(): ValueError: boom")
    assert describe_failure(ValueError("x"), plugins) == "ValueError: x"

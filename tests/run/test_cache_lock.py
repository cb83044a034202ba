"""Two processes sharing a cache (two shards of a grid on a cluster) never build one entry at
once: the second waits for the first and then uses its entry."""
import os
import subprocess
import sys
import time
from pathlib import Path

# One process of a shard: get_or_build one entry whose build appends to `builds.log` and, when
# asked, holds on until the test creates `release` (so the other process surely arrives mid-build).
BUILDER = r"""
import os, sys, time
from pathlib import Path
from arkd_bench.run.cache import ArtifactCache

root, name, hold = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "hold"

def build(folder):
    with open(root / "builds.log", "a") as log:
        log.write(name + "\n")
    (root / f"{name}.building").touch()
    deadline = time.time() + 60
    while hold and not (root / "release").exists() and time.time() < deadline:
        time.sleep(0.02)
    (folder / "weights.txt").write_text(f"built by {name}")

cache = ArtifactCache(root / "cache", say=lambda message: print(message, flush=True))
folder = cache.get_or_build("students", "abc123", build)
print("RESULT", (folder / "weights.txt").read_text(), cache.hits, cache.misses, flush=True)
"""


def _start(tmp_path: Path, name: str, hold: bool) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path), name, "hold" if hold else "go"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_second_process_waits_for_the_first_build_and_reuses_it(tmp_path):
    first = _start(tmp_path, "first", hold=True)
    _wait_for(tmp_path / "first.building", first)
    second = _start(tmp_path, "second", hold=False)
    # The second process reports the live holder (the first one's pid), then blocks on the lock.
    line = second.stdout.readline()
    assert "is being built by pid" in line and str(first.pid) in line, line
    assert second.poll() is None
    (tmp_path / "release").touch()
    out_first, out_second = first.communicate(timeout=60)[0], second.communicate(timeout=60)[0]
    assert first.returncode == 0 and second.returncode == 0, (out_first, out_second)
    assert (tmp_path / "builds.log").read_text().split() == ["first"]
    assert "RESULT built by first 0 1" in out_first
    assert "RESULT built by first 1 0" in out_second  # a hit on the entry the first one built
    entry = tmp_path / "cache" / "students" / "abc123"
    assert sorted(p.name for p in entry.iterdir()) == [".complete", "weights.txt"]
    assert sorted(os.listdir(entry.parent)) == ["abc123"]  # no temp folders or lock files among entries


def test_without_contention_each_process_builds_or_hits_without_waiting(tmp_path):
    for name, expected in (("one", "RESULT built by one 0 1"), ("two", "RESULT built by one 1 0")):
        proc = _start(tmp_path, name, hold=False)
        out = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, out
        assert out.strip().splitlines() == [expected]

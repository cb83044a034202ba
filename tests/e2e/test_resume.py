"""A grid killed with SIGKILL keeps its finished cells; a rerun completes it to the same
leaderboard as an uninterrupted run."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import run_command as command
from helpers import write_tiny_recipe as write_recipe


def done_cells(out: Path) -> list[Path]:
    done = []
    for status in (out / "cells").glob("*/status.json"):
        try:
            if json.loads(status.read_text())["status"] == "done":
                done.append(status.parent)
        except (json.JSONDecodeError, KeyError):
            pass
    return done


def leaderboard(out: Path):
    results = json.loads((out / "results.json").read_text())
    return sorted((r["method"], r["student"] or "", json.dumps(r["metrics"], sort_keys=True))
                  for r in results["leaderboard"])


# 1-2 minutes on 2 cores; a signal stop and a corrupted cell are resumed in the default suite
@pytest.mark.slow
def test_sigkill_then_rerun_keeps_finished_cells_and_matches_uninterrupted(tmp_path):
    env = {**os.environ, "ARKD_BENCH_NO_AUTOLOAD": "1"}
    recipe = write_recipe(tmp_path / "recipe")
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    process = subprocess.Popen(command(recipe, killed, tmp_path / "cache_k"), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(done_cells(killed)) < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {cell.name: (cell / "scores.json").read_bytes() for cell in done_cells(killed)}
    assert 2 <= len(finished) < 4, "the kill should land partway through the 4-cell grid"
    stamps = {name: (killed / "cells" / name / "scores.json").stat().st_mtime_ns for name in finished}

    rerun = subprocess.run(command(recipe, killed, tmp_path / "cache_k"), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"skipped {len(finished)} finished" in rerun.stdout
    for name, content in finished.items():
        path = killed / "cells" / name / "scores.json"
        assert path.read_bytes() == content and path.stat().st_mtime_ns == stamps[name]

    subprocess.run(command(recipe, whole, tmp_path / "cache_w"), env=env, check=True, capture_output=True)
    assert leaderboard(killed) == leaderboard(whole)


def test_corrupted_cell_is_redone(tmp_path):
    env = {**os.environ, "ARKD_BENCH_NO_AUTOLOAD": "1"}
    recipe = write_recipe(tmp_path / "recipe")
    out = tmp_path / "out"
    subprocess.run(command(recipe, out, tmp_path / "cache"), env=env, check=True, capture_output=True)
    victim = sorted(done_cells(out))[0]
    intact = {c.name: (c / "scores.json").read_bytes() for c in done_cells(out) if c != victim}
    (victim / "scores.json").write_text('{"metrics": {"rougeL": 1')  # torn write from elsewhere
    rerun = subprocess.run(command(recipe, out, tmp_path / "cache"), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "ran 1 cells" in rerun.stdout
    json.loads((victim / "scores.json").read_text())
    assert intact == {c.name: (c / "scores.json").read_bytes() for c in done_cells(out) if c != victim}


def running_cells(out: Path) -> list[str]:
    found = []
    for status in (out / "cells").glob("*/status.json"):
        try:
            if json.loads(status.read_text())["status"] == "running":
                found.append(status.parent.name)
        except (json.JSONDecodeError, KeyError):
            pass
    return found


PLUGIN = '''
from arkd_bench import hookimpl
from arkd_bench.weighting.base import WeightingStrategy


class Exploding(WeightingStrategy):
    """Raises on its first step."""

    name = "exploding"

    def weights(self, features):
        raise RuntimeError("the strategy blew up")


@hookimpl
def arkd_register_weightings(register):
    register(Exploding)
'''


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_stops_cleanly_and_a_rerun_resumes(tmp_path, signum):
    """Finished cells stay, the running one is marked interrupted, the exit code says which
    signal; a plugin that raises fails only its own cell, named."""
    env = {**os.environ, "ARKD_BENCH_NO_AUTOLOAD": "1"}
    recipe_path = write_recipe(tmp_path / "recipe")
    recipe = yaml.safe_load(recipe_path.read_text())
    (recipe_path.parent / "exploding.py").write_text(PLUGIN)
    recipe["plugins"] = ["exploding.py"]
    recipe["methods"].insert(0, {"name": "boom", "objective": ["fkl"], "weighting": "exploding"})
    recipe_path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    process = subprocess.Popen(command(recipe_path, out, tmp_path / "cache"), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (len(done_cells(out)) >= 2 and running_cells(out)) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-2000:]
    assert "Traceback" not in stderr and "run the same command again to resume" in stderr
    statuses = {p.parent.name: json.loads(p.read_text()) for p in (out / "cells").glob("*/status.json")}
    interrupted = [s for s in statuses.values() if s["status"] == "interrupted"]
    assert len(interrupted) == 1 and signal.Signals(signum).name in interrupted[0]["error"]
    finished = {c.name: (c / "scores.json").read_bytes() for c in done_cells(out)}
    assert len(finished) >= 2

    rerun = subprocess.run(command(recipe_path, out, tmp_path / "cache"), env=env, capture_output=True, text=True)
    assert rerun.returncode == 1, rerun.stderr[-2000:]  # the exploding cell failed; the rest ran
    assert "1 failed" in rerun.stdout and "Traceback" not in rerun.stderr
    assert f"skipped {len(finished)} finished" in rerun.stdout
    failed = [s for s in (json.loads(p.read_text()) for p in (out / "cells").glob("*/status.json"))
              if s["status"] == "failed"]
    assert [s["error"] for s in failed] == [
        "weighting plugin 'exploding' (from exploding.py) raised in weights(): RuntimeError: the strategy blew up"]
    assert all(s["status"] in ("done", "failed") for s in
               (json.loads(p.read_text()) for p in (out / "cells").glob("*/status.json")))
    for name, content in finished.items():
        assert (out / "cells" / name / "scores.json").read_bytes() == content

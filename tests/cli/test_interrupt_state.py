"""A run stopped by SIGINT says what state its run folder is in: nothing ran (nothing to
resume), every cell finished (reports written or not), or some finished (run again to resume);
it exits 128 + the signal either way."""
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.faults import RunInterrupted, interruption_message, run_folder_state
from arkd_bench.rundir.store import RunDir

FIXTURES = Path(__file__).parents[1] / "fixtures"
OUT = Path("/runs/r")


def test_before_any_cell_there_is_nothing_to_resume():
    for statuses in (None, [None, None]):
        assert interruption_message("SIGINT", OUT, statuses) == \
            "interrupted by SIGINT before any cell ran; nothing to resume"


def test_after_the_grid_it_says_whether_the_reports_were_written():
    assert interruption_message("SIGINT", OUT, ["done", "done"], reports_written=True) == \
        "interrupted by SIGINT after all 2 cells finished (2 done); reports written: /runs/r/leaderboard.md"
    assert interruption_message("SIGINT", OUT, ["done", "failed"], reports_written=False) == (
        "interrupted by SIGINT after all 2 cells finished (1 done, 1 failed) in /runs/r; reports not written: "
        "run the same command again to write them (finished cells are skipped and failed ones retried)")


def test_mid_run_it_counts_the_finished_cells_and_says_how_to_resume():
    assert interruption_message("SIGTERM", OUT, ["done", "interrupted", None]) == (
        "stopped by SIGTERM: 1 of 3 cells finished, kept in /runs/r; 2 not finished (the one that was "
        "running is marked unfinished); run the same command again to resume")
    assert interruption_message("SIGINT", OUT, ["interrupted", None]) == (
        "stopped by SIGINT: no cell finished yet; 2 not finished (the one that was running is marked "
        "unfinished); run the same command again to resume")


def test_the_folder_state_is_read_from_the_cell_statuses_and_the_reports_age(tmp_path):
    rundir = RunDir(tmp_path)
    ids = ["a" * 12, "b" * 12]
    assert run_folder_state(tmp_path, ids) == ([None, None], False)
    for name in ("results.json", "leaderboard.md", "report.html"):  # an earlier run's reports
        (tmp_path / name).write_text("old")
    time.sleep(0.01)
    rundir.set_status(ids[0], "done")
    rundir.set_status(ids[1], "failed")
    assert run_folder_state(tmp_path, ids) == (["done", "failed"], False)
    time.sleep(0.01)
    for name in ("results.json", "leaderboard.md", "report.html"):
        (tmp_path / name).write_text("new")
    assert run_folder_state(tmp_path, ids) == (["done", "failed"], True)


# -- through the command: a stand-in runner stops where a real one would -------------------
@pytest.fixture
def recipe(tmp_path):
    (tmp_path / "tiny_pairs.jsonl").write_text((FIXTURES / "tiny_pairs.jsonl").read_text())
    path = tmp_path / "recipe.yaml"
    path.write_text((FIXTURES / "tiny.yaml").read_text())
    return path


def stand_in_runner(monkeypatch, statuses, reports=False, stop=KeyboardInterrupt):
    """`run_recipe` that leaves these cell statuses (and reports), then is stopped."""
    from arkd_bench.recipe.matrix import expand

    def run_recipe(loaded, out, **kwargs):
        rundir = RunDir(out)
        for cell, status in zip(expand(loaded.recipe), statuses):
            if status is not None:
                rundir.set_status(cell.id, status)
        if reports:
            for name in ("results.json", "leaderboard.md", "report.html"):
                (Path(out) / name).write_text("{}")
        raise stop()

    monkeypatch.setitem(sys.modules, "arkd_bench.run.grid", types.SimpleNamespace(run_recipe=run_recipe))


def test_sigint_after_the_grid_before_the_reports(recipe, tmp_path, monkeypatch):
    stand_in_runner(monkeypatch, ["done"] * 4)
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 130, result.output
    assert "after all 4 cells finished (4 done)" in result.output
    assert "reports not written: run the same command again to write them" in result.output


def test_sigint_after_the_reports(recipe, tmp_path, monkeypatch):
    stand_in_runner(monkeypatch, ["done"] * 3 + ["failed"], reports=True)
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 130, result.output
    assert "after all 4 cells finished (3 done, 1 failed); reports written: " in result.output


def test_a_signal_mid_run(recipe, tmp_path, monkeypatch):
    stand_in_runner(monkeypatch, ["done", "done", "interrupted"], stop=lambda: RunInterrupted(signal.SIGTERM))
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 143, result.output
    assert "stopped by SIGTERM: 2 of 4 cells finished" in result.output
    assert "run the same command again to resume" in result.output


def test_sigint_during_start_up_is_a_real_signal_and_says_nothing_ran(recipe, tmp_path):
    """The recipe's plugin file sends SIGINT to its own process while the recipe is checked."""
    (tmp_path / "stop.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n")
    data = yaml.safe_load(recipe.read_text())
    data["plugins"] = ["stop.py"]
    recipe.write_text(yaml.safe_dump(data))
    env = {**os.environ, "ARKD_BENCH_NO_AUTOLOAD": "1"}
    # A shell's background job starts with SIGINT ignored, and Python then installs no SIGINT
    # handler: give the child the default disposition, as an interactive terminal would.
    done = subprocess.run([sys.executable, "-m", "arkd_bench", "run", str(recipe), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=300,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert done.returncode == 130, done.stderr[-2000:]
    assert done.stderr.strip() == "interrupted by SIGINT before any cell ran; nothing to resume", done.stderr
    assert not (tmp_path / "out").exists()

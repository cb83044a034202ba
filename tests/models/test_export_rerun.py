"""`export` on a run that saved no students gives a command that works, and that command (the
same recipe with train.save_student on, into the same folder) re-runs exactly the finished
distill cells, seeded as before, so they get their students and the same scores. Cells are
named by METHOD[:SEED] as well as by id."""
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.rundir.store import RunDir
from arkd_bench.models.export import ExportError, find_cell, missing_parts

runner = CliRunner()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def scores_and_losses(out):
    """(method, seed) -> (metrics, predictions, training losses or None) of every cell."""
    found = {}
    for cell_dir in sorted((out / "cells").iterdir()):
        cell = json.loads((cell_dir / "cell.json").read_text())
        log = cell_dir / "train_log.jsonl"
        losses = [json.loads(line)["loss"] for line in log.read_text().splitlines()] if log.is_file() else None
        predictions = [json.loads(line)["prediction"] for line in (cell_dir / "generations.jsonl").read_text().splitlines()]
        found[(cell["method"], cell["seed"])] = (json.loads((cell_dir / "scores.json").read_text())["metrics"],
                                                 predictions, losses)
    return found


def test_the_advised_rerun_saves_the_students_of_finished_cells_without_changing_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ARKD_BENCH_CACHE", str(tmp_path / "cache"))  # the advised command has no --cache-dir
    recipe, out = tmp_path / "tiny.yaml", tmp_path / "run"
    shutil.copy(FIXTURES / "tiny.yaml", recipe)
    shutil.copy(FIXTURES / "tiny_pairs.jsonl", tmp_path / "tiny_pairs.jsonl")
    first = runner.invoke(app, ["run", str(recipe), "--out", str(out)])
    assert first.exit_code == 0, first.output
    before = scores_and_losses(out)
    distilled = {key for key, (_, _, losses) in before.items() if losses is not None}
    assert distilled == {("fkl", 0), ("mix", 0)}

    refused = runner.invoke(app, ["export", str(out), "fkl:0", str(tmp_path / "fkl")])
    assert refused.exit_code == 1
    message = " ".join(refused.output.split())
    assert "no saved student (the run did not save students)" in message
    assert f"set `train: {{save_student: true}}` in {recipe} and run `arkd-bench run {recipe} --out {out}`" in message
    command = shlex.split(re.search(r"run `arkd-bench (run [^`]+)`", message).group(1))

    text = recipe.read_text()
    recipe.write_text(text.replace("train: {steps: 3,", "train: {save_student: true, steps: 3,"))
    rerun = runner.invoke(app, command)
    assert rerun.exit_code == 0, rerun.output
    said = " ".join(rerun.output.split())
    assert said.count("re-running to save its student") == 2, rerun.output
    assert "ran 2 cells, skipped 2 finished, 0 failed" in said
    assert scores_and_losses(out) == before  # seeded: the same training, the same scores

    exported = runner.invoke(app, ["export", str(out), "fkl:0", str(tmp_path / "fkl")])
    assert exported.exit_code == 0, exported.output
    assert missing_parts(tmp_path / "fkl") == []
    assert runner.invoke(app, ["export", str(out), "mix", str(tmp_path / "mix")]).exit_code == 0  # one seed

    again = runner.invoke(app, command)  # every student saved: nothing runs
    assert again.exit_code == 0 and "ran 0 cells, skipped 4 finished" in " ".join(again.output.split())


def fake_run(tmp_path, cells, recipe_path=None, shard=None, recipe_text="name: fake\n"):
    """A run folder with cell.json (and status) files only: enough to name cells."""
    rundir = RunDir(tmp_path / "run")
    for i, (kind, method, seed, dataset) in enumerate(cells):
        cell_id = f"{i:x}" * 12
        rundir.write(cell_id[:12], "cell.json", {"id": cell_id[:12], "kind": kind, "dataset": dataset,
                                                 "teacher": "t", "student": "s", "method": method, "seed": seed})
        rundir.set_status(cell_id[:12], "done")
        rundir.write(cell_id[:12], "scores.json", {"rougeL": 1.0})
    (rundir.path / "run.json").write_text(json.dumps({"recipe_path": recipe_path, "shard": shard}))
    (rundir.path / "recipe.yaml").write_text(recipe_text)
    return rundir


GRID = [("sft", "sft", 0, "d"), ("distill", "fkl", 0, "d"), ("distill", "fkl", 1, "d"), ("distill", "mix", 0, "d")]


def test_method_and_seed_name_a_cell(tmp_path):
    rundir = fake_run(tmp_path, GRID)
    assert find_cell(rundir, "fkl:1") == "222222222222"
    assert find_cell(rundir, "mix") == "333333333333"  # its only seed
    assert find_cell(rundir, "mix:0") == "333333333333"
    assert find_cell(rundir, "1111") == "111111111111"  # ids and prefixes work as before
    with pytest.raises(ExportError, match=r"method 'fkl' has several seeds \(0, 1\); give one, e\.g\. fkl:0"):
        find_cell(rundir, "fkl")
    with pytest.raises(ExportError, match="method 'fkl' has no cell of seed 7; its cells are: fkl:0 111111111111, "
                                          "fkl:1 222222222222"):
        find_cell(rundir, "fkl:7")
    with pytest.raises(ExportError, match="must be a whole number"):
        find_cell(rundir, "fkl:x")


def test_no_such_cell_lists_the_cells_by_method_and_seed(tmp_path):
    rundir = fake_run(tmp_path, GRID)
    with pytest.raises(ExportError) as exc:
        find_cell(rundir, "rkl:0")
    assert str(exc.value).endswith(
        "no cell 'rkl:0' (give METHOD, METHOD:SEED or a cell id); its cells are: sft:0 000000000000 (sft: no "
        "student), fkl:0 111111111111, fkl:1 222222222222, mix:0 333333333333")
    several = fake_run(tmp_path / "two", GRID + [("distill", "fkl", 0, "other")])
    with pytest.raises(ExportError, match=r"'fkl:0' matches several cells \(fkl:0 111111111111 \[d t->s\], "
                                          r"fkl:0 444444444444 \[other t->s\]\); give the cell's id"):
        find_cell(several, "fkl:0")


def test_the_advice_names_the_recipe_the_shard_or_says_it_is_set(tmp_path):
    from arkd_bench.models.export import rerun_advice, student_folder

    recipe = tmp_path / "my recipe.yaml"
    recipe.write_text("name: fake\n")
    rundir = fake_run(tmp_path, GRID, recipe_path=str(recipe), shard=[2, 3])
    with pytest.raises(ExportError) as exc:
        student_folder(rundir, "fkl:1")
    assert (f"set `train: {{save_student: true}}` in {recipe} and run `arkd-bench run '{recipe}' --out "
            f"{rundir.path} --shard 2/3`") in str(exc.value)
    moved = fake_run(tmp_path / "moved", GRID, recipe_path=str(tmp_path / "gone.yaml"),
                     recipe_text="name: fake\ntrain: {save_student: true}\n")
    advice = rerun_advice(moved)
    assert advice.startswith(f"run `arkd-bench run RECIPE --out {moved.path}` (RECIPE: the recipe this run was "
                             f"made from, {tmp_path / 'gone.yaml'}; a copy is in {moved.path / 'recipe.yaml'})")
    moved.set_status("111111111111", "failed")
    with pytest.raises(ExportError, match="the cell has not finished: its status is failed"):
        student_folder(moved, "fkl:0")

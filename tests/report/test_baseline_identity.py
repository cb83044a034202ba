"""A golden baseline records what each method was (its resolved spec and hash); `check`
fails a method whose spec changed as "changed: re-baseline", even when its score improved."""
import json
import shutil

from typer.testing import CliRunner

from arkd_bench.cli import app

runner = CliRunner()


def test_a_baseline_records_each_method_and_a_changed_one_fails_as_changed(grid, tmp_path):
    _, run, _ = grid
    golden = tmp_path / "golden.json"
    assert runner.invoke(app, ["check", str(run), "--write-baseline", str(golden)]).exit_code == 0
    baseline = json.loads(golden.read_text())
    rows = {r["method"]: r for r in baseline["rows"]}
    assert baseline["baseline_version"] == 3
    assert rows["mix"]["spec"] == {"objective": [{"name": "fkl", "label": None, "options": {}},
                                                 {"name": "rkl", "label": None, "options": {}}],
                                   "weighting": {"name": "fixed", "options": {"weights": [0.5, 0.5]}}}
    assert len(rows["mix"]["spec_hash"]) == 12 and rows["mix"]["spec_hash"] != rows["fkl"]["spec_hash"]
    assert "spec" not in rows["teacher"] and "spec" not in rows["sft"]  # no method to record
    rows["mix"]["metrics"]["rougeL"] -= 5.0  # the run now reads 5 points better than its baseline
    golden.write_text(json.dumps(baseline))
    improved = runner.invoke(app, ["check", str(run), "--baseline", str(golden)])
    assert improved.exit_code == 0, improved.output

    # the same method name with other options (a score that "improved" must not pass the gate)
    changed = tmp_path / "changed"
    shutil.copytree(run, changed)
    for cell_json in (changed / "cells").glob("*/cell.json"):
        cell = json.loads(cell_json.read_text())
        if cell["method"] == "mix":
            cell["config"]["method"]["weighting"]["options"]["weights"] = [0.9, 0.1]
            cell_json.write_text(json.dumps(cell))
    result = runner.invoke(app, ["check", str(changed), "--baseline", str(golden)])
    assert result.exit_code == 1, result.output
    assert ("FAIL mix method vs baseline [tiny: t -> s]: changed: re-baseline (weighting.options.weights[0]: "
            "0.5 -> 0.9; weighting.options.weights[1]: 0.5 -> 0.1); the baseline holds another method's numbers, "
            "so none is compared") in result.output
    assert "mix rougeL vs baseline" not in result.output and "PASS fkl rougeL vs baseline" in result.output

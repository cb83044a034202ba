"""Reports of real run folders: files every run writes, the report command's formats, pairing."""
import csv
import io
import itertools
import json

import numpy as np
import pytest

from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.plugins import load_plugins
from arkd_bench.evaluate.stats import seeded_bootstrap
from arkd_bench.report.pairing import compare_rows
from arkd_bench.report.rows import load

runner = CliRunner()


def test_every_run_writes_results_leaderboard_and_html(grid):
    _, run, _ = grid
    results = json.loads((run / "results.json").read_text())
    # the documented keys stay; the extras ride along
    assert {"schema_version", "recipe", "runs", "cells", "leaderboard", "reference", "comparisons",
            "settings", "metric_info", "primary_metric", "eval_settings"} <= set(results)
    mix = next(r for r in results["leaderboard"] if r["method"] == "mix")
    assert {"dataset", "teacher", "student", "method", "kind", "failed", "metrics", "vs_reference",
            "label", "rank", "cells", "recipes", "pending"} <= set(mix)
    stat = mix["metrics"]["rougeL"]
    assert stat["n"] == 2 and stat["low"] <= stat["mean"] <= stat["high"]
    assert mix["vs_reference"]["rougeL"]["n_examples"] == 3
    md = (run / "leaderboard.md").read_text()
    assert "training seeds 0, 1; 3 test examples; generation: greedy decoding" in md
    for method in ("teacher", "sft", "fkl", "mix"):
        assert f"| {method} |" in md
    html = (run / "report.html").read_text()
    assert html.count('<img alt=') == 3 and "could not draw" not in html


def test_report_formats_and_output_files(grid, tmp_path):
    _, run, _ = grid
    md = runner.invoke(app, ["report", str(run)])
    assert md.exit_code == 0 and md.output.startswith("# Leaderboard: tiny")
    page = tmp_path / "out" / "report.html"  # format from the suffix; parent folders created
    result = runner.invoke(app, ["report", str(run), "-o", str(page)])
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and "<th>rougeL ↑</th>" in html
    assert html.count('src="data:image/png;base64,') == 3  # metric bars, weights, loss
    assert "http" not in html.replace("http-equiv", "")  # self-contained: nothing fetched
    result = runner.invoke(app, ["report", str(run), "--format", "csv", "-o", str(tmp_path / "lb.txt")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "lb.txt").read_text())))
    assert [r["method"] for r in rows] == ["teacher", "sft", "fkl", "mix"]
    assert rows[2]["metric"] == "rougeL" and rows[2]["rank"] and float(rows[2]["mean_low"]) <= float(rows[2]["mean"])
    as_json = runner.invoke(app, ["report", str(run), "--format", "json"])
    assert json.loads(as_json.output)["leaderboard"][0]["method"] == "teacher"


def test_any_two_rows_can_be_paired(grid):
    _, run, _ = grid
    collected = load([run], load_plugins(autoload=False))
    rows = {r.method: r for r in collected.rows}
    a, b = collected.paired(rows["fkl"], rows["mix"], "rougeL")
    assert len(a) == len(b) == 3
    # per seed and example, read straight from the cells' generations (generation seeds averaged)
    def matrix(row):
        by_seed = {}
        for cell_id in row.cells:
            seed = json.loads((run / "cells" / cell_id / "cell.json").read_text())["seed"]
            lines = [json.loads(l) for l in (run / "cells" / cell_id / "generations.jsonl").read_text().splitlines()]
            by_seed[seed] = [np.mean([l["scores"]["rougeL"] for l in lines if l["example"] == i]) for i in range(3)]
        return np.array([by_seed[s] for s in sorted(by_seed)])

    mix, fkl = matrix(rows["mix"]), matrix(rows["fkl"])
    assert mix.shape == (2, 3)  # two training seeds x three test examples
    comparison = collected.compare(rows["mix"], rows["fkl"], "rougeL")
    assert (comparison.interval, comparison.seeds, comparison.paired_seeds) == ("seeds+examples", (2, 2), True)
    assert comparison == seeded_bootstrap(mix, fkl, paired_seeds=True)
    assert comparison.diff == pytest.approx(float((mix - fkl).mean()))
    vs = rows["mix"].vs_reference["rougeL"]
    assert (vs["interval"], vs["seeds"], vs["paired_seeds"]) == ("seeds+examples", [2, 2], True)
    assert rows["mix"].metrics["rougeL"]["interval"] == "seeds+examples"
    # one seed each: seeds averaged away, exact sign-flip test over the 3 paired examples
    one = compare_rows({0: dict(enumerate(mix[0]))}, {0: dict(enumerate(fkl[0]))})
    d = mix[0] - fkl[0]
    flips = [abs(np.mean(np.array(signs) * d)) for signs in itertools.product((1, -1), repeat=3)]
    assert one.interval == "examples"
    assert one.p_value == pytest.approx(np.mean([f >= abs(d.mean()) - 1e-9 for f in flips]))
    html = (run / "report.html").read_text()
    assert "intervals and p-values cover training seeds and test examples (two levels" in html
    assert "stars: Holm-adjusted p-values over this table&#x27;s 2 comparisons" in html


def test_merged_report_lists_failed_cells(grid, failed_run):
    _, run, _ = grid
    result = runner.invoke(app, ["report", str(run), str(failed_run)])
    assert result.exit_code == 0, result.output
    assert "# Leaderboard: tiny, tiny-boom" in result.output
    assert "| boom (1 failed) |" in result.output
    assert ("boom seed=0 [tiny/t->s] failed: weighting plugin 'boom' (from boom.py) raised in weights(): "
            "RuntimeError: deliberate failure in boom") in result.output


def test_one_method_name_with_other_settings_in_another_recipe_is_its_own_row(grid, tmp_path):
    """Merging recipes: shared cells (same id) appear once; a method whose settings differ
    gets a row per recipe instead of averaging different things."""
    import shutil

    _, run, _ = grid
    other = tmp_path / "other"
    shutil.copytree(run, other)
    run_json = json.loads((other / "run.json").read_text())
    for summary in run_json["cells"]:
        if summary["kind"] == "distill":  # as if this recipe trained longer: new configs, new ids
            new = ("e" if summary["id"][0] != "e" else "d") + summary["id"][1:]
            (other / "cells" / summary["id"]).rename(other / "cells" / new)
            cell = json.loads((other / "cells" / new / "cell.json").read_text())
            cell["id"], cell["config"]["train"]["steps"] = new, 99
            (other / "cells" / new / "cell.json").write_text(json.dumps(cell))
            summary["id"] = new
    run_json["recipe"] = "other"
    (other / "run.json").write_text(json.dumps(run_json))
    results = load([run, other], load_plugins(autoload=False)).results
    assert results["recipe"] == "tiny, other"
    assert [r["label"] for r in results["leaderboard"]] == [
        "teacher", "sft", "fkl (tiny)", "fkl (other)", "mix (tiny)", "mix (other)"]
    assert [r["metrics"]["rougeL"]["n"] for r in results["leaderboard"]] == [1, 2, 2, 2, 2, 2]
    assert results["leaderboard"][3]["vs_reference"]["rougeL"]["reference"] == "sft"

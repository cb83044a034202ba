"""Leaderboard statistics over real run folders: stars adjusted for a table's comparisons
(`report --adjust`), distinct training seeds in merged runs, one-seed rows beside multi-seed rows.

The runs are copies of the shared tiny grid (two seeds, three test examples) whose per-example
scores are rewritten, so the p-values are known in advance.
"""
import json
import shutil

import numpy as np
import pytest
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.evaluate.stats import seeded_bootstrap
from arkd_bench.plugins import load_plugins
from arkd_bench.recipe.schema import CheckSpec
from arkd_bench.report.checks import run_checks
from arkd_bench.report.rows import load

runner = CliRunner()


def cells_of(run):
    """cell id -> cell.json of every cell folder of a run."""
    return {p.name: json.loads((p / "cell.json").read_text()) for p in (run / "cells").iterdir()}


def rescore(run, score):
    """Every finished cell's per-example rougeL becomes score(method, seed, example); scores.json follows."""
    for cell_id, cell in cells_of(run).items():
        folder = run / "cells" / cell_id
        lines = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
        for line in lines:
            line["scores"]["rougeL"] = score(cell["method"], cell["seed"], line["example"])
        (folder / "generations.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        scores = json.loads((folder / "scores.json").read_text())
        scores["metrics"]["rougeL"] = float(np.mean([line["scores"]["rougeL"] for line in lines]))
        (folder / "scores.json").write_text(json.dumps(scores))


def copy_run(run, dest, keep=lambda cell: True, rename=False):
    """A copy of a run folder with only the cells `keep` accepts; `rename` gives every cell but
    the teacher a new id (as a rerun elsewhere would: same method, same seed, another cell)."""
    shutil.copytree(run, dest)
    run_json = json.loads((dest / "run.json").read_text())
    kept = []
    for summary in run_json["cells"]:
        folder = dest / "cells" / summary["id"]
        if not keep(summary):
            shutil.rmtree(folder)
            continue
        if rename and summary["kind"] != "teacher":
            new = ("e" if summary["id"][0] != "e" else "d") + summary["id"][1:]
            folder.rename(dest / "cells" / new)
            cell = json.loads((dest / "cells" / new / "cell.json").read_text())
            cell["id"] = summary["id"] = new
            (dest / "cells" / new / "cell.json").write_text(json.dumps(cell))
        kept.append(summary)
    run_json["cells"] = kept
    (dest / "run.json").write_text(json.dumps(run_json))
    return dest


def seed_gap(p_value):
    """Half the seed-to-seed swing of a gain of 5 that, with two paired seeds and the same gain on
    every example, gives this two-sided p-value (Student's t with 1 df on the seed means)."""
    return 5.0 / scipy_stats.t.isf(p_value / 2, 1)


@pytest.fixture(scope="module")
def known_p_values(grid, tmp_path_factory):
    """The tiny grid with scores where fkl - sft has p = 0.03 and mix - sft has p = 0.008."""
    _, run, _ = grid
    swing = {"fkl": seed_gap(0.03), "mix": seed_gap(0.008)}

    def score(method, seed, example):
        base = 20.0 + 10.0 * example + seed
        return base + (5.0 + (swing[method] if seed else -swing[method]) if method in swing else 0.0)

    copy = copy_run(run, tmp_path_factory.mktemp("known") / "run")
    rescore(copy, score)
    return copy


def star_of(markdown, method):
    line = next(line for line in markdown.splitlines() if line.startswith("|") and f"| {method} |" in line)
    return line.rstrip(" |").rsplit("]", 1)[1]


def test_adjust_sets_the_stars_of_a_table_and_says_which(known_p_values):
    results = load([known_p_values], load_plugins(autoload=False), adjust="none").results
    vs = {r["method"]: r["vs_reference"]["rougeL"] for r in results["leaderboard"] if r["vs_reference"]}
    assert vs["fkl"]["p_value"] == pytest.approx(0.03) and vs["mix"]["p_value"] == pytest.approx(0.008)
    stars = {}
    for adjust in ("none", "holm", "bonferroni"):
        md = runner.invoke(app, ["report", str(known_p_values), "--adjust", adjust])
        assert md.exit_code == 0, md.output
        stars[adjust] = (star_of(md.output, "mix"), star_of(md.output, "fkl"))
    # none: 0.008, 0.03; Holm: 0.016, max(0.016, 0.03); Bonferroni: 0.016, 0.06
    assert stars == {"none": ("**", "*"), "holm": ("*", "*"), "bonferroni": ("*", "")}
    md = runner.invoke(app, ["report", str(known_p_values)]).output  # Holm by default
    assert "- stars: Holm-adjusted p-values over this table's 2 comparisons" in md
    as_json = json.loads(runner.invoke(app, ["report", str(known_p_values), "-f", "json", "--adjust",
                                             "bonferroni"]).output)
    assert as_json["adjustment"] == {"method": "bonferroni", "family": "table", "comparisons": {"tiny": 2}}
    p = {r["method"]: r["vs_reference"]["rougeL"]["p_adjusted"] for r in as_json["leaderboard"] if r["vs_reference"]}
    assert p == pytest.approx({"fkl": 0.06, "mix": 0.016})
    html = runner.invoke(app, ["report", str(known_p_values), "-f", "html", "--adjust", "none"]).output
    assert "stars: unadjusted p-values (2 comparisons in this table)" in html
    bad = runner.invoke(app, ["report", str(known_p_values), "--adjust", "fdr"])
    assert bad.exit_code != 0 and "--adjust 'fdr': valid: holm, bonferroni, none" in bad.output


def test_a_check_tests_its_one_comparison_unadjusted(known_p_values):
    collected = load([known_p_values], load_plugins(autoload=False))
    (result,) = run_checks(collected, [CheckSpec(method="fkl", metric="rougeL", beats="sft", significant=True)])
    assert result.passed, result.reason  # p = 0.03 < 0.05, though its Holm-adjusted table p is not
    assert "p=0.03 (one comparison, unadjusted)" in result.numbers


def test_seeds_count_distinct_seeds_when_merged_runs_repeat_one(grid, tmp_path):
    _, run, _ = grid
    plugins = load_plugins(autoload=False)
    first = copy_run(run, tmp_path / "first", keep=lambda c: c["seed"] == 0)
    again = copy_run(run, tmp_path / "again", keep=lambda c: c["seed"] == 0, rename=True)
    results = load([first, again], plugins).results
    fkl = next(r for r in results["leaderboard"] if r["method"] == "fkl")
    assert len(fkl["cells"]) == 2 and fkl["seeds"] == [0] and fkl["metrics"]["rougeL"]["n"] == 1
    assert fkl["vs_reference"]["rougeL"]["interval"] == "examples"  # seed 0 against seed 0: no seed variance
    md = runner.invoke(app, ["report", str(first), str(again)]).output
    assert "| fkl | 1† |" in md
    assert "- one training seed: intervals and p-values cover test-example variance only" in md
    assert "two levels" not in md.split("| rank", 1)[0].split("## tiny", 1)[1]
    # two seeds, each run twice: still two seeds, compared seed by seed
    results = load([run, copy_run(run, tmp_path / "twice", rename=True)], plugins).results
    fkl = next(r for r in results["leaderboard"] if r["method"] == "fkl")
    assert len(fkl["cells"]) == 4 and fkl["seeds"] == [0, 1] and fkl["metrics"]["rougeL"]["n"] == 2
    vs = fkl["vs_reference"]["rougeL"]
    assert (vs["interval"], vs["seeds"], vs["paired_seeds"]) == ("seeds+examples", [2, 2], True)


def test_a_one_seed_row_takes_the_seed_variance_pooled_over_its_grid(known_p_values, tmp_path):
    lost = copy_run(known_p_values, tmp_path / "lost",  # fkl's seed 1 is missing (a failed or dropped cell)
                    keep=lambda c: not (c["method"] == "fkl" and c["seed"] == 1))
    plugins = load_plugins(autoload=False)
    collected = load([lost], plugins)
    rows = {r.method: r for r in collected.rows}

    def seeds_x_examples(method):
        scores = collected.seed_scores(rows[method], "rougeL")
        return np.array([[scores[s][i] for i in range(3)] for s in sorted(scores)])

    matrix = {m: seeds_x_examples(m) for m in ("sft", "fkl", "mix")}
    # pooled over the trained rows with 2+ seeds (sft, mix): one df each
    pooled = (np.mean([matrix["sft"].mean(1).var(ddof=1), matrix["mix"].mean(1).var(ddof=1)]), 2)
    vs = rows["fkl"].vs_reference["rougeL"]
    expected = seeded_bootstrap(matrix["fkl"], matrix["sft"], pooled_seed_var=pooled)
    assert (vs["interval"], vs["seed_variance"], vs["seeds"]) == ("seeds+examples", "pooled", [1, 2])
    assert (vs["low"], vs["high"], vs["p_value"]) == pytest.approx((expected.low, expected.high, expected.p_value))
    assert rows["fkl"].metrics["rougeL"]["seed_variance"] == "pooled"
    assert rows["mix"].vs_reference["rougeL"]["seed_variance"] == "own"
    md = runner.invoke(app, ["report", str(lost)]).output
    assert ("rows with one training seed (fkl) take the seed variance pooled over the multi-seed rows of their "
            "teacher and student, assuming methods share it (‡)") in md
    fkl_line = next(line for line in md.splitlines() if line.startswith("|") and "| fkl |" in line)
    assert "| fkl | 1† |" in fkl_line and fkl_line.endswith("‡ |")
    (check,) = run_checks(collected, [CheckSpec(method="fkl", metric="rougeL", beats="sft", significant=True)])
    assert "1 vs 2 training seeds (the one-seed side's seed variance pooled over the grid's multi-seed rows)" \
        in check.reason

"""`arkd-bench check` as CI uses it: scoped checks, checks from another file against existing
runs, one line per check (text, GitHub annotations, JSON) and the markdown step summary."""
import json

from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.recipe.schema import CheckSpec
from arkd_bench.report.checks import run_checks
from arkd_bench.report.rows import Collected

runner = CliRunner()


def two_students():
    """fkl and akl rows for students s1 (akl better) and s2 (fkl better), one cell each."""
    rows, cells, scores = [], [], {}
    for student, akl, fkl in (("s1", 12.0, 10.0), ("s2", 9.0, 11.0)):
        for method, value in (("akl", akl), ("fkl", fkl)):
            cid = f"{student}-{method}"
            rows.append({"dataset": "d", "teacher": "t", "student": student, "method": method, "label": method,
                         "kind": "distill", "failed": 0, "pending": 0, "cells": [cid], "recipes": ["r"],
                         "metrics": {"rougeL": {"mean": value, "std": 0.0, "n": 1}}})
            cells.append({"id": cid, "kind": "distill", "method": method, "seed": 0, "status": "done",
                          "metrics": {"rougeL": value}})
            scores[cid] = {"rougeL": {0: value, 1: value}}
    return Collected({"leaderboard": rows, "cells": cells, "metric_info": {}}, scores)


def test_a_check_scoped_to_one_student_reads_only_its_rows():
    collected = two_students()
    (s1,) = run_checks(collected, [CheckSpec(method="akl", metric="rougeL", beats="fkl", student="s1")])
    assert s1.passed and s1.where == "d: t -> s1"
    unscoped = run_checks(collected, [CheckSpec(method="akl", metric="rougeL", beats="fkl")])
    assert [(r.where, r.passed) for r in unscoped] == [("d: t -> s1", True), ("d: t -> s2", False)]
    (typo,) = run_checks(collected, [CheckSpec(method="akl", metric="rougeL", beats="fkl", student="s3",
                                               dataset="e")])
    assert not typo.passed and "unknown student 's3'" in typo.reason and "unknown dataset 'e'" in typo.reason


def write_checks(path, checks):
    path.write_text("# checks added after the run\nchecks:\n" + "".join(f"  - {json.dumps(c)}\n" for c in checks))
    return path


def test_checks_of_another_file_run_against_an_existing_run_without_rerunning(grid, tmp_path):
    _, run, _ = grid
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    checks = write_checks(tmp_path / "more-checks.yaml", [
        {"method": "sft", "metric": "rougeL", "at_least": 2, "dataset": "tiny", "student": "s", "recipe": "tiny"},
        {"method": "mix", "metric": "weight/fkl", "at_most": 0.4, "teacher": "t"}])
    result = runner.invoke(app, ["check", str(run), "--recipe", str(checks)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == "PASS sft rougeL >= 2 [tiny: t -> s]: mean 5.00 ± 0.79 over 2 seeds"
    assert lines[1] == ("FAIL mix weight/fkl <= 0.4 [tiny: t -> s]: max 0.5 > 0.4; "
                        "min 0.5, max 0.5 over 6 logged steps (2 seeds)")
    assert lines[2:] == ["2 checks: 1 passed, 1 failed"]  # the run's own check is not evaluated
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


def test_names_the_runs_do_not_have_are_all_reported_with_their_lines(grid, tmp_path):
    _, run, _ = grid
    checks = write_checks(tmp_path / "bad.yaml", [
        {"method": "mix", "metric": "rougeL", "at_least": 0},
        {"method": "mixx", "metric": "rougeL", "at_least": 0, "student": "ss"},
        {"method": "mix", "metric": "rogueL", "beats": "fkl", "dataset": "tinyy", "recipe": "other"}])
    result = runner.invoke(app, ["check", str(run), "--recipe", str(checks)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{checks}:4: checks[1].method: unknown method 'mixx'; did you mean 'mix'? valid: fkl, mix, sft, teacher",
        f"{checks}:4: checks[1].student: unknown student 'ss'; did you mean 's'? valid: s",
        f"{checks}:5: checks[2].dataset: unknown dataset 'tinyy'; did you mean 'tiny'? valid: tiny",
        f"{checks}:5: checks[2].recipe: unknown recipe 'other'; valid: tiny",
        f"{checks}:5: checks[2].metric: unknown metric 'rogueL'; did you mean 'rougeL'? valid: rougeL"]
    schema = write_checks(tmp_path / "schema.yaml", [{"method": "mix", "metric": "rougeL", "at_least": 0,
                                                      "students": "s"}])
    result = runner.invoke(app, ["check", str(run), "--recipe", str(schema)])
    assert result.exit_code == 1 and f"{schema}:3: checks[0].students: unknown field; valid fields here: " \
        "at_least, at_most, beats, dataset, method, metric, recipe, significant, student, teacher" in result.output


def test_github_annotations_point_at_the_check_and_the_summary_is_written(grid, tmp_path):
    _, run, _ = grid
    checks = write_checks(tmp_path / "gate.yaml", [
        {"method": "sft", "metric": "rougeL", "at_least": 2},
        {"method": "sft", "metric": "rougeL", "beats": "fkl", "significant": True}])
    summary = tmp_path / "summary.md"
    result = runner.invoke(app, ["check", str(run), "--recipe", str(checks)],
                           env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 3 and lines[0].startswith("PASS sft rougeL >= 2")
    assert lines[1].startswith(f"::error file={str(checks).replace(':', '%3A')},line=4,"
                               "title=check failed%3A sft beats fkl on rougeL significantly::FAIL sft beats fkl")
    assert "not significant: p=" in lines[1]
    text = summary.read_text()
    assert text.startswith("### arkd-bench check: 2 checks: 1 passed, 1 failed\n")
    table = [l for l in text.splitlines() if l.startswith("| ")]
    assert table[0] == "| result | check | where | numbers | reason |"
    assert table[1].startswith("| ❌ **FAIL** | sft beats fkl on rougeL significantly | tiny: t -> s |")
    assert table[2].startswith("| ✅ pass | sft rougeL >= 2 |")


def test_text_and_json_formats(grid, tmp_path):
    _, run, _ = grid
    text = runner.invoke(app, ["check", str(run), "--format", "text"], env={"GITHUB_ACTIONS": "true"})
    assert text.exit_code == 0 and text.output.splitlines() == [
        "PASS sft rougeL >= 2 [tiny: t -> s]: mean 5.00 ± 0.79 over 2 seeds",
        "1 checks: 1 passed, 0 failed"]
    parsed = json.loads(runner.invoke(app, ["check", str(run), "--format", "json"]).output)
    assert parsed["passed"] == 1 and parsed["failed"] == 0
    (check,) = parsed["checks"]
    assert check["check"] == "sft rougeL >= 2" and check["passed"] is True
    assert check["file"] == str(run / "recipe.yaml")
    recipe_lines = (run / "recipe.yaml").read_text().splitlines()
    assert recipe_lines[check["line"] - 1].lstrip().startswith("- method: sft")  # the line of the check
    bad = runner.invoke(app, ["check", str(run), "--format", "xml"])
    assert bad.exit_code == 2 and "valid: table, text, github, json" in bad.output  # a flag mistake: bad usage

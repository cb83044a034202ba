"""Flags of `report` and `check` are validated like recipes: a mistake exits 2 (bad usage,
README's exit codes) with the valid choices and a "did you mean", instead of running with a
silent default or exiting 1 like a failed check."""
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.plugins import load_plugins

runner = CliRunner()


def test_report_reference_must_be_a_method_of_the_runs(grid):
    _, run, _ = grid
    typo = runner.invoke(app, ["report", str(run), "--reference", "egapp"])
    assert typo.exit_code == 2, typo.output
    assert "--reference: unknown method 'egapp'; valid: fkl, mix, sft, teacher" in typo.output
    close = runner.invoke(app, ["report", str(run), "--reference", "fkll"])
    assert close.exit_code == 2 and "did you mean 'fkl'?" in close.output, close.output
    assert runner.invoke(app, ["report", str(run), "--reference", "fkl"]).exit_code == 0


def test_check_tolerance_for_an_unknown_metric(grid):
    _, run, _ = grid
    result = runner.invoke(app, ["check", str(run), "--tolerance", "rougel=2"])
    assert result.exit_code == 2, result.output
    assert "--tolerance 'rougel=2': unknown metric 'rougel'; did you mean 'rougeL'? valid: rougeL" in result.output
    unreadable = runner.invoke(app, ["check", str(run), "--tolerance", "rougeL=two"])
    assert unreadable.exit_code == 2 and "expected TOL or METRIC=TOL" in unreadable.output, unreadable.output


def test_check_format_typo_is_bad_usage_not_a_failed_check(grid):
    _, run, _ = grid
    result = runner.invoke(app, ["check", str(run), "--format", "yaml"])
    assert result.exit_code == 2, result.output
    assert "--format 'yaml': valid: table, text, github, json" in result.output
    close = runner.invoke(app, ["check", str(run), "--format", "txt"])
    assert close.exit_code == 2 and "did you mean 'text'?" in close.output, close.output


def test_report_format_and_adjust_typos(grid):
    _, run, _ = grid
    fmt = runner.invoke(app, ["report", str(run), "--format", "mdd"])
    assert fmt.exit_code == 2 and "--format: unknown reporter 'mdd'; did you mean 'md'?" in fmt.output, fmt.output
    adjust = runner.invoke(app, ["report", str(run), "--adjust", "holmm"])
    assert adjust.exit_code == 2 and "--adjust 'holmm': did you mean 'holm'?" in adjust.output


def test_output_tex_writes_latex_or_is_refused(grid, tmp_path):
    _, run, _ = grid
    out = tmp_path / "table.tex"
    result = runner.invoke(app, ["report", str(run), "-o", str(out)])
    if "latex" in load_plugins(autoload=False).registry("reporter"):
        assert result.exit_code == 0, result.output
        text = out.read_text()
        assert "\\begin{tabular}" in text and not text.startswith("# Leaderboard"), text[:200]
    else:
        assert result.exit_code == 2, result.output
        assert "-o" in result.output and ".tex files are written by the 'latex' reporter" in result.output
        assert not out.exists()


def test_an_unknown_output_suffix_is_refused_not_written_as_markdown(grid, tmp_path):
    _, run, _ = grid
    out = tmp_path / "table.jsn"
    result = runner.invoke(app, ["report", str(run), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "unknown output suffix '.jsn'; did you mean '.json'?" in result.output
    assert "--format" in result.output and not out.exists()
    # with --format the file gets that format, whatever its name
    notes = tmp_path / "notes.txt"
    assert runner.invoke(app, ["report", str(run), "--format", "md", "-o", str(notes)]).exit_code == 0
    assert notes.read_text().startswith("# Leaderboard")


def test_format_and_a_suffix_of_another_format_conflict(grid, tmp_path):
    _, run, _ = grid
    result = runner.invoke(app, ["report", str(run), "--format", "json", "-o", str(tmp_path / "table.md")])
    assert result.exit_code == 2, result.output
    assert ".md is the suffix of the 'md' reporter" in result.output
    assert not (tmp_path / "table.md").exists()

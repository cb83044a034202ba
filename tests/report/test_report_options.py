"""`report --metrics/--columns/--digits` on the tiny grid: the table they choose, and exit 2
with a "did you mean" for a name the runs do not have."""
import re

from typer.testing import CliRunner

from arkd_bench.cli import app

runner = CliRunner()


def test_report_options_pick_metrics_columns_and_digits(grid):
    _, run, _ = grid
    md = runner.invoke(app, ["report", str(run), "--metrics", "rougeL", "--columns", "method,seeds,mean,delta",
                             "--digits", "1"])
    assert md.exit_code == 0, md.output
    table = [line for line in md.output.splitlines() if line.startswith("|")]
    assert table[0] == "| method | seeds | rougeL ↑ | ΔrougeL vs sft [95% CI] |"
    assert re.fullmatch(r"\| fkl \| 2† \| \d+\.\d ± \d+\.\d \| [+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]\** \|", table[4])
    latex = runner.invoke(app, ["report", str(run), "-f", "latex", "--columns", "method,mean"])
    assert latex.exit_code == 0 and r"\begin{tabular}{lr}" in latex.output and r"\toprule" in latex.output
    for args, message in ((["--metrics", "rougel"], "--metrics: unknown metric 'rougel'; did you mean 'rougeL'?"),
                          (["--columns", "method,meen"], "--columns: unknown column 'meen'; did you mean 'mean'?"),
                          (["--digits", "9"], "--digits 9: give 0 to 8 decimals"),
                          (["-f", "json", "--digits", "1"], "--digits: the 'json' reporter takes no table options")):
        bad = runner.invoke(app, ["report", str(run), *args])
        assert bad.exit_code == 2 and message in bad.output, (args, bad.output)

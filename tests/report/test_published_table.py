"""The published table, from hand-built results: digits that follow the interval, intervals
clipped to the metric's range, the teacher's by-definition values, the table options, the
short legend, and the LaTeX reporter."""
import re
import shutil
import subprocess

import pytest

from arkd_bench.evaluate.bertscore import BertScore
from arkd_bench.evaluate.distribution import TFForwardKL, TFTailCoverage, TFTotalVariation
from arkd_bench.evaluate.rouge import RougeL
from arkd_bench.report.html import bar_intervals, render_html
from arkd_bench.report.latex import escape, render_latex
from arkd_bench.report.markdown import render_markdown
from arkd_bench.report.reporters import LatexReporter, TableOptions
from arkd_bench.report.rows import _metric_info, add_ranks, adjust_comparisons
from arkd_bench.report.table import COLUMNS, View, view_problems

INFO = {"rougeL": {"higher_is_better": True, "scale": "percent", "bounds": [0.0, 100.0], "teacher_value": None},
        "tf_fkl": {"higher_is_better": False, "scale": "nats", "bounds": [0.0, None], "teacher_value": 0.0},
        "tf_tvd": {"higher_is_better": False, "scale": "percent", "bounds": [0.0, 100.0], "teacher_value": 0.0}}


def stat(mean, std, n, low, high):
    return {"mean": mean, "std": std, "n": n, "low": low, "high": high}


def vs(diff, low, high, p):
    return {"reference": "sft", "diff": diff, "low": low, "high": high, "p_value": p, "n_examples": 50}


def row(method, kind="distill", metrics=None, vs_reference=None, seeds=(0, 1), student="s", label=None):
    return {"dataset": "d", "teacher": "t", "student": None if kind == "teacher" else student, "method": method,
            "label": label or method, "kind": kind, "failed": 0, "pending": 0, "cells": [], "recipes": ["r"],
            "seeds": list(seeds), "metrics": metrics or {}, "vs_reference": vs_reference or {}}


def two_seed_results():
    """The issue's table: 2 seeds, Rouge-L intervals far past 0, tf_* for the teacher fixed at 0."""
    rows = [
        row("teacher", "teacher", seeds=(0,), metrics={"rougeL": stat(31.0, 0.0, 1, 29.0, 33.0),
                                                       "tf_fkl": stat(0.0, 0.0, 1, 0.0, 0.0),
                                                       "tf_tvd": stat(0.0, 0.0, 1, 0.0, 0.0)}),
        row("sft", "sft", metrics={"rougeL": stat(5.0, 0.79, 2, -17.5, 27.5),
                                   "tf_fkl": stat(0.0144, 0.0001, 2, 0.0139, 0.0149),
                                   "tf_tvd": stat(6.70, 0.01, 2, 6.59, 6.81)}),
        row("fkl", metrics={"rougeL": stat(2.22, 3.14, 2, -24.0, 30.5),
                            "tf_fkl": stat(0.0121, 0.0001, 2, 0.0110, 0.0130),
                            "tf_tvd": stat(6.11, 0.02, 2, 5.92, 6.29)},
            vs_reference={"rougeL": vs(-2.78, -26.01, 20.46, 0.6), "tf_fkl": vs(-0.0023, -0.0030, -0.0016, 0.001),
                          "tf_tvd": vs(-30.0, -130.0, 70.0, 0.5)}),
    ]
    results = {"recipe": "r", "runs": [], "cells": [], "leaderboard": rows, "reference": "sft", "comparisons": 3,
               "primary_metric": "rougeL", "metric_info": INFO, "eval_settings": []}
    add_ranks(results)
    adjust_comparisons(results, "holm")
    return results


def line_of(text, method):
    return next(line for line in text.splitlines() if line.startswith(f"| - | {method} |")
                or re.match(rf"\| \d+ \| {method} \|", line))


def test_builtin_metrics_declare_their_range_and_teacher_value():
    assert RougeL.bounds == (0.0, 100.0) and RougeL.teacher_value is None
    assert BertScore.bounds == (None, 100.0)  # rescaled with a baseline it goes below 0
    assert TFForwardKL.bounds == (0.0, None) and TFForwardKL.teacher_value == 0.0
    assert TFTotalVariation.bounds == (0.0, 100.0) and TFTotalVariation.teacher_value == 0.0
    assert TFTailCoverage.teacher_value == 100.0
    assert _metric_info(TFForwardKL) == INFO["tf_fkl"]
    assert _metric_info(None)["bounds"] == [None, None]  # an unknown metric is unbounded


def test_digits_follow_the_interval_width():
    md = render_markdown(two_seed_results())
    fkl = line_of(md, "fkl")
    # Rouge-L over 2 seeds: half-widths of 22-27 points leave no decimal worth printing
    assert "| 2 ± 3 |" in fkl and "| -3 [-26, +20] |" in fkl
    # tf_fkl: half-widths of 0.001 and 0.0007 nats need four and five decimals, not 0.01 ± 0.00
    assert "| **0.0121 ± 0.0001** |" in fkl and "| -0.00230 [-0.00300, -0.00160]" in fkl
    assert "| **5 ± 1** |" in line_of(md, "sft")
    fixed = render_markdown(two_seed_results(), View(digits=3))
    assert "| 2.220 ± 3.140 |" in line_of(fixed, "fkl")


def test_no_star_on_a_difference_printed_as_zero():
    results = two_seed_results()
    fkl = results["leaderboard"][2]
    fkl["vs_reference"]["tf_fkl"] = vs(0.00004, 0.00001, 0.2, 0.0001)  # significant, and tiny beside its width
    adjust_comparisons(results, "none")
    for view in (View(), View(digits=2)):
        cell = line_of(render_markdown(results, view), "fkl").split(" | ")[-2]
        value, stars = cell.split(" [")[0], cell.rsplit("]", 1)[1]
        assert stars == "**" and float(value) != 0, cell


def test_intervals_are_clipped_to_the_metric_range():
    results = two_seed_results()
    md = render_markdown(results)
    # tf_tvd is 0-100, so a difference lies within ±100: -130 is clipped, and the table says so
    assert line_of(md, "fkl").endswith("| -30 [-100, +70] |")
    assert "- Δ intervals reaching past their metric's range, clipped to it: fkl (tf_tvd)" in md
    # a mean's interval (the HTML bars) is clipped to [0, 100]; tf_fkl has no upper bound
    stats = [r["metrics"]["rougeL"] for r in results["leaderboard"]]
    assert bar_intervals(results, "rougeL", stats) == [(29.0, 33.0), (0.0, 27.5), (0.0, 30.5)]
    assert bar_intervals(results, "tf_fkl", [stat(0.01, 0.0, 2, -0.5, 9.0)]) == [(0.0, 9.0)]


def test_html_bars_stay_within_the_range_and_leave_out_the_teacher_by_definition(monkeypatch):
    from arkd_bench.report import plots

    drawn = {}

    def capture(labels, means, intervals, metric, higher_is_better, reference=None, bounds=(None, None)):
        drawn[metric] = (labels, intervals, bounds)
        return None

    monkeypatch.setattr(plots, "metric_bars", capture)
    render_html(two_seed_results(), {})
    labels, intervals, bounds = drawn["rougeL"]
    assert labels == ["teacher", "sft", "fkl"] and min(low for low, _ in intervals) == 0.0 and bounds == (0.0, 100.0)
    assert drawn["tf_fkl"][0] == ["sft", "fkl"]  # the teacher's 0 is a definition, not a measurement


def test_the_teacher_shows_a_dash_where_a_metric_is_fixed_by_definition():
    md = render_markdown(two_seed_results())
    assert line_of(md, "teacher").startswith("| - | teacher | 1 | 31.0 | - | - |")
    assert "teacher -: tf_fkl, tf_tvd fixed by definition" in md
    no_info = two_seed_results()
    del no_info["metric_info"]  # without metric info, nothing is assumed
    assert line_of(render_markdown(no_info), "teacher").startswith("| - | teacher | 1 | 31.0 | 0.00 | 0.00 |")


def test_metrics_columns_and_digits_choose_what_the_table_shows():
    md = render_markdown(two_seed_results(), View(metrics=("tf_fkl", "rougeL"), columns=("method", "mean", "seeds"),
                                                   digits=1))
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table[0] == "| method | tf_fkl ↓ | rougeL ↑ | seeds |"
    assert table[4] == "| fkl | **0.0 ± 0.0** | 2.2 ± 3.1 | 2† |"
    deltas = render_markdown(two_seed_results(), View(columns=("method", "delta"), metrics=("rougeL",)))
    assert [line for line in deltas.splitlines() if line.startswith("|")][0] == "| method | ΔrougeL vs sft [95% CI] |"
    results = two_seed_results()
    assert view_problems(results, View(metrics=("rougel",), columns=("methd",), digits=12)) == [
        "--metrics: unknown metric 'rougel'; did you mean 'rougeL'? valid: rougeL, tf_fkl, tf_tvd",
        "--columns: unknown column 'methd'; did you mean 'method'? valid: " + ", ".join(sorted(COLUMNS)),
        "--digits 12: give 0 to 8 decimals"]
    assert view_problems(results, View(metrics=("rougeL",), columns=("method", "teacher"), digits=0)) == []
    # the reporter's options model accepts exactly the columns the table knows
    assert TableOptions.model_fields["columns"].annotation.__args__[0].__args__[0].__args__ == COLUMNS


def test_a_short_legend_under_each_table_and_the_full_one_at_the_end():
    md = render_markdown(two_seed_results())
    table_end = md.index("\n\n", md.index("| fkl |"))
    key = md[table_end:].strip().split("\n", 1)[0]
    assert key.startswith("mean ± std over seeds; bold: best student; Δ vs sft [95% interval], * p<0.05")
    assert "† under 3 seeds: low power" in key and key.endswith("full legend below.")
    assert len(key.split()) <= 45
    assert md.index("## Legend") > table_end and "† fewer than 3 training seeds: low power" in md.split("## Legend")[1]
    assert "Mean ± std" not in md.split("## Legend")[0]  # the long legend no longer opens the page
    html = render_html(two_seed_results(), {})
    assert html.index("under 3 seeds: low power") < html.index("<h2>Legend</h2>") < html.index("fewer than 3 training")


def test_low_power_marks_agree_across_formats():
    results = two_seed_results()
    assert "<td>2†</td>" in render_html(results, {})
    latex = render_latex(results)
    assert r"fkl & 2$^{\dagger}$ &" in latex and r"teacher & 1 &" in latex


# -- LaTeX -------------------------------------------------------------------------------------

def latex_results():
    results = two_seed_results()
    fkl = results["leaderboard"][2]
    fkl["vs_reference"]["tf_fkl"]["seed_variance"] = "pooled"
    results["leaderboard"].append(row("a_b", metrics={"rougeL": stat(4.0, 1.0, 2, 1.0, 7.0)},
                                      label="a_b & 50% {x} #1 $y ^~\\", seeds=(0, 1, 2)))
    add_ranks(results)
    return results


def test_latex_structure_escapes_bolds_and_keeps_the_marks():
    text = LatexReporter().render(latex_results())
    assert LatexReporter.name == "latex" and LatexReporter.suffix == ".tex"
    lines = text.splitlines()
    assert lines.count(r"\toprule") == lines.count(r"\midrule") == lines.count(r"\bottomrule") == 1
    begin = lines.index(r"\begin{tabular}{rlrrrrrrr}")
    assert lines.index(r"\toprule") == begin + 1 and lines.index(r"\bottomrule") + 1 == lines.index(r"\end{tabular}")
    assert lines[begin + 2] == (r"Rank (rougeL) & Method & Seeds & rougeL $\uparrow$ & tf\_fkl $\downarrow$ & "
                                r"tf\_tvd $\downarrow$ & $\Delta$rougeL & $\Delta$tf\_fkl & $\Delta$tf\_tvd \\")
    assert r"a\_b \& 50\% \{x\} \#1 \$y \textasciicircum{}\textasciitilde{}\textbackslash{} & 3 &" in text
    fkl = next(line for line in lines if line.startswith("3 & fkl &"))
    assert r"\textbf{\boldmath$0.0121 \pm 0.0001$}" in fkl  # best tf_fkl
    assert r"$-0.00230^{**\ddagger}$" in fkl  # stars, and the pooled seed variance mark
    interval_line = lines[lines.index(fkl) + 1]
    assert interval_line.startswith(" & ") and r"{\scriptsize$[-26, +20]$}" in interval_line
    assert r"1 & sft & 2$^{\dagger}$ & \textbf{\boldmath$5 \pm 1$}" in text  # sft's 5 beats a_b's 4.0
    assert text.count(r"\textbf{") == 3  # one best per metric column: rougeL (sft), tf_fkl, tf_tvd (fkl)
    assert r"-- & teacher & 1 & $31.0$ & -- & -- & -- & -- & -- \\" in lines
    assert r"\caption{d. mean $\pm$ std over seeds; bold: best student;" in text
    assert all(line.startswith("%") for line in lines if "Legend:" in line or "fewer than 3" in line)


def test_latex_escape_keeps_hostile_text_on_one_line():
    assert escape("x\n\\end{tabular}%") == r"x \textbackslash{}end\{tabular\}\%"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine (pdflatex) installed")
def test_latex_output_compiles(tmp_path):
    body = render_latex(latex_results())
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n"
                                      "\\begin{document}\n" + body + "\\end{document}\n", encoding="utf-8")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0

"""Names, errors and plugin strings are untrusted: a newline or a `|` must not break a
markdown table or list, nor a CSV row."""
import csv
import io

from arkd_bench.report.markdown import render_markdown
from arkd_bench.report.reporters import CsvReporter
from arkd_bench.report.rows import add_ranks

HOSTILE = "evil\n| injected | row |\r\n# heading"


def hostile_results():
    row = {"dataset": "d", "teacher": HOSTILE, "student": "s", "method": HOSTILE, "label": HOSTILE,
           "kind": "distill", "failed": 1, "pending": 0, "cells": [], "recipes": [HOSTILE],
           "metrics": {"rougeL": {"mean": 1.0, "std": 0.0, "n": 1}}, "vs_reference": {}}
    cell = {"id": "abcdef012345", "kind": "distill", "dataset": "d", "teacher": "t", "student": "s",
            "method": HOSTILE, "seed": 0, "status": "failed", "error": f"ValueError: {HOSTILE}", "metrics": {}}
    res = {"recipe": HOSTILE, "runs": [], "cells": [cell], "leaderboard": [row], "reference": "sft",
           "comparisons": 1, "primary_metric": "rougeL", "metric_info": {"rougeL": {"higher_is_better": True}},
           "eval_settings": []}
    add_ranks(res)
    return res


def test_markdown_keeps_hostile_text_on_its_own_row_and_line():
    md = render_markdown(hostile_results())
    assert not any(line.startswith("# heading") for line in md.splitlines())
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 3  # header, rule, the one row
    header_columns = table[0].count(" | ")
    assert table[2].replace("\\|", "").count(" | ") == header_columns  # escaped pipes add no column
    listed = [line for line in md.splitlines() if line.startswith("- `abcdef012345`")]
    assert len(listed) == 1 and "ValueError: evil" in listed[0] and "# heading" in listed[0]


def test_csv_rows_survive_newlines_and_separators():
    text = CsvReporter().render(hostile_results())
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 2 and len(rows[1]) == len(CsvReporter.COLUMNS)
    assert rows[1][CsvReporter.COLUMNS.index("method")] == HOSTILE
    assert rows[1][CsvReporter.COLUMNS.index("teacher")] == HOSTILE

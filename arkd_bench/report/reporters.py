"""Builtin reporters: leaderboard formats rendered from the results dict."""
from __future__ import annotations

import csv
import io
import json
from typing import Any, ClassVar

from arkd_bench.report.markdown import render_markdown


class Reporter:
    """Base class: `render(results) -> str`; `suffix` names the file it writes."""

    name: ClassVar[str]
    suffix: ClassVar[str]

    def render(self, results: dict[str, Any]) -> str:
        raise NotImplementedError


class MarkdownReporter(Reporter):
    """Tables per dataset: mean ± std, best in bold, difference vs the reference."""

    name = "md"
    suffix = ".md"

    def render(self, results):
        return render_markdown(results)


class JsonReporter(Reporter):
    """The full results dict (the format CI and other tools read)."""

    name = "json"
    suffix = ".json"

    def render(self, results):
        return json.dumps(results, indent=2, default=str) + "\n"


class CsvReporter(Reporter):
    """One line per leaderboard row and metric."""

    name = "csv"
    suffix = ".csv"

    def render(self, results):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["dataset", "teacher", "student", "method", "metric", "mean", "std", "n",
                         "diff_vs_reference", "low", "high", "p_value"])
        for row in results["leaderboard"]:
            for metric, stat in sorted(row["metrics"].items()):
                c = row.get("vs_reference", {}).get(metric, {})
                writer.writerow([row["dataset"], row["teacher"], row["student"] or "", row["method"], metric,
                                 stat["mean"], stat["std"], stat["n"], c.get("diff", ""), c.get("low", ""),
                                 c.get("high", ""), c.get("p_value", "")])
        return buffer.getvalue()

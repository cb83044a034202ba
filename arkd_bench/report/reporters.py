"""The reporter kind's builtins (md, json, csv, html, latex), each rendering the results dict as one format."""
from __future__ import annotations

import csv
import io
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from arkd_bench.plugins.options import NoOptions, PluginOptions
from arkd_bench.report.markdown import render_markdown
from arkd_bench.report.numbers import MAX_DIGITS
from arkd_bench.report.rows import leaderboard_rows
from arkd_bench.report.table import View


class Reporter:
    """Base class: `render(results) -> str`; `suffix` names the file it writes; `Options`
    is what `Reporter(**options)` accepts (none unless a reporter declares them)."""

    name: ClassVar[str]
    suffix: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, **options: Any) -> None:
        self.options = self.Options(**options)

    def render(self, results: dict[str, Any]) -> str:
        raise NotImplementedError


class TableOptions(PluginOptions):
    """What the leaderboard tables show (`report --metrics/--columns/--digits`)."""

    metrics: list[str] | None = Field(None, description="metrics to show, in this order; default: every metric")
    columns: list[Literal["rank", "method", "teacher", "student", "seeds", "mean", "delta"]] | None = Field(
        None, description="columns in this order (mean and delta: one per metric); default: rank, method, "
                          "teacher and student when they vary, seeds, mean, delta")
    digits: int | None = Field(None, ge=0, le=MAX_DIGITS, description="decimals of every number; default: two "
                               "significant digits of each 95% interval's half-width")

    @property
    def view(self) -> View:
        return View(tuple(self.metrics) if self.metrics is not None else None,
                    tuple(self.columns) if self.columns is not None else None, self.digits)


class MarkdownReporter(Reporter):
    """Tables per dataset: mean ± std, rank, best in bold, difference vs the reference."""

    name = "md"
    suffix = ".md"
    Options = TableOptions

    def render(self, results):
        return render_markdown(results, self.options.view)


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
    # The first twelve columns are the original layout; later ones are appended, never reordered.
    COLUMNS = ["dataset", "teacher", "student", "method", "metric", "mean", "std", "n",
               "diff_vs_reference", "low", "high", "p_value",
               "mean_low", "mean_high", "rank", "failed", "pending", "label", "reference", "p_adjusted", "seeds"]

    def render(self, results):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(self.COLUMNS)
        for row in leaderboard_rows(results):
            for metric, stat in sorted(row.metrics.items()):
                c = row.vs_reference.get(metric, {})
                rank = (row.rank or {}).get(metric)
                writer.writerow([row.dataset, row.teacher, row.student or "", row.method, metric,
                                 stat["mean"], stat["std"], stat["n"], c.get("diff", ""), c.get("low", ""),
                                 c.get("high", ""), c.get("p_value", ""), stat.get("low", ""), stat.get("high", ""),
                                 "" if rank is None else rank, row.failed, row.pending,
                                 row.label, c.get("reference", ""), c.get("p_adjusted", ""),
                                 len(row.seeds) if row.seeds is not None else stat["n"]])
        return buffer.getvalue()


class HtmlReporter(Reporter):
    """One self-contained page: the tables plus metric, weight and loss plots (base64 PNG)."""

    name = "html"
    suffix = ".html"
    Options = TableOptions

    def render(self, results):
        from arkd_bench.report.html import render_html
        from arkd_bench.report.read import train_logs

        return render_html(results, train_logs(results), self.options.view)


class LatexReporter(Reporter):
    """The tables as LaTeX (booktabs): best in bold, intervals on a second line, stars and marks kept."""

    name = "latex"
    suffix = ".tex"
    Options = TableOptions

    def render(self, results):
        from arkd_bench.report.latex import render_latex

        return render_latex(results, self.options.view)

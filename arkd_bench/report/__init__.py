"""Leaderboards, reports in every format and `check`'s pass/fail checks, built from run folders."""
from arkd_bench.report.reporters import (CsvReporter, HtmlReporter, JsonReporter, LatexReporter, MarkdownReporter,
                                         Reporter)

BUILTIN_REPORTERS: dict[str, type[Reporter]] = {
    cls.name: cls for cls in (MarkdownReporter, JsonReporter, CsvReporter, HtmlReporter, LatexReporter)
}

__all__ = ["BUILTIN_REPORTERS", "Reporter"]

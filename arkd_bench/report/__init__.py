"""Leaderboards and reports built from run folders."""
from arkd_bench.report.reporters import CsvReporter, JsonReporter, MarkdownReporter, Reporter

BUILTIN_REPORTERS: dict[str, type[Reporter]] = {
    cls.name: cls for cls in (MarkdownReporter, JsonReporter, CsvReporter)
}

__all__ = ["BUILTIN_REPORTERS", "Reporter"]

"""Check results as CI reads them: one line per check, GitHub annotations, JSON, markdown.

Every line format here puts one check on one line with no wrapping of its own, so a
narrow CI log shows each check once, greppable; the rich table is for terminals only.
"""
from __future__ import annotations

import json

from arkd_bench.report.checks import CheckResult

FORMATS = ("table", "text", "github", "json")


def summary_line(results: list[CheckResult]) -> str:
    failed = sum(not r.passed for r in results)
    return f"{len(results)} checks: {len(results) - failed} passed, {failed} failed"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def text_line(r: CheckResult) -> str:
    detail = "; ".join(p for p in ((r.reason, r.numbers) if not r.passed else (r.numbers, r.reason)) if p and p != "-")
    return _one_line(f"{'PASS' if r.passed else 'FAIL'} {r.check} [{r.where}]" + (f": {detail}" if detail else ""))


def _escape_data(text: str) -> str:
    # GitHub's workflow-command encoding: a message ends at a newline, so encode it.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_line(r: CheckResult) -> str:
    """`::error file=..,line=..,title=..::message` for a failure (shown on the recipe line
    in the pull request), a plain line for a pass."""
    if r.passed:
        return text_line(r)
    props = [f"file={_escape_property(r.file)}"] if r.file else []
    props += [f"line={r.line}"] if r.file and r.line else []
    props.append(f"title={_escape_property('check failed: ' + r.check)}")
    return f"::error {','.join(props)}::{_escape_data(text_line(r))}"


def json_text(results: list[CheckResult]) -> str:
    failed = sum(not r.passed for r in results)
    return json.dumps({"passed": len(results) - failed, "failed": failed,
                       "checks": [{"check": r.check, "where": r.where, "passed": r.passed, "numbers": r.numbers,
                                   "reason": r.reason, "file": r.file, "line": r.line} for r in results]}, indent=2)


def _md_cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|") or "-"


def markdown_summary(results: list[CheckResult], title: str = "arkd-bench check") -> str:
    """A job-summary section: the count, then failures first."""
    lines = [f"### {title}: {summary_line(results)}", "", "| result | check | where | numbers | reason |",
             "|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: r.passed):
        lines.append("| " + " | ".join([("✅ pass" if r.passed else "❌ **FAIL**"), _md_cell(r.check), _md_cell(r.where),
                                        _md_cell(r.numbers), _md_cell(r.reason)]) + " |")
    return "\n".join(lines) + "\n"

"""The leaderboard as markdown: one pure function of the results dict (and a `View`)."""
from __future__ import annotations

from typing import Any

from arkd_bench.report.notes import legend
from arkd_bench.report.table import Table, View, datasets, make_table, unfinished_cells


def _one_line(text: str) -> str:
    """Untrusted text (names, errors, generations) on one line: a newline would end a table
    row or a list item and let the rest read as markdown of its own."""
    return " ".join(str(text).splitlines())


def _escape(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


def table_markdown(table: Table) -> str:
    lines = ["| " + " | ".join(_escape(h) for h in table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    for row in table.rows:
        cells = [f"**{_escape(c.text)}**" if c.bold else _escape(c.text) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def key_markdown(table: Table) -> str:
    """The short legend under a table; the full one closes the page."""
    return _one_line("; ".join(table.key + ["full legend below"])) + "."


def unfinished_markdown(results: dict[str, Any]) -> list[str]:
    cells = unfinished_cells(results)
    if not cells:
        return []
    out = ["", "## Failed or unfinished cells", ""]
    for c in cells:
        reason = c.get("error") or ("never finished" if c["status"] != "failed" else "no error recorded")
        where = f"{c['dataset']}/{c['teacher']}->{c['student'] or '-'}"
        out.append(_one_line(f"- `{c['id']}` {c['method']} seed={c['seed']} [{where}] {c['status']}: {reason}"))
    return out


def render_markdown(results: dict[str, Any], view: View | None = None) -> str:
    out = [f"# Leaderboard: {_one_line(results['recipe'])}"]
    for dataset in datasets(results):
        table = make_table(results, dataset, view)
        out += ["", f"## {_one_line(dataset)}", ""]
        out += [f"- {_one_line(line)}" for line in table.context]
        out += ["", table_markdown(table), "", key_markdown(table)]
    out += unfinished_markdown(results)
    out += ["", "## Legend", "", _one_line(legend(results))]
    return "\n".join(out) + "\n"

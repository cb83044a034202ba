"""The leaderboard as LaTeX: one booktabs `table` per dataset, to `\\input` into a paper.

A pure function of the results dict and a `View`, from the same `make_table` as markdown
and HTML: the best student value of each metric in bold, each Δ's 95% interval on a
second line in small type, stars and the low-power (†) and pooled-seed-variance (‡)
marks kept. The caption carries the table's short legend; the full legend and the
settings above each table are `%` comments. Needs `\\usepackage{booktabs}`. Untrusted
text (names, recipe, errors) is escaped and kept on one line.
"""
from __future__ import annotations

import re
import textwrap
from typing import Any

from arkd_bench.report.notes import legend
from arkd_bench.report.numbers import BORROWED, LOW_POWER, Cell
from arkd_bench.report.table import Column, Table, View, datasets, make_table, unfinished_cells

# Characters LaTeX reads as commands, plus the symbols the tables use, as text-mode LaTeX.
SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
           ">": r"\textgreater{}", "|": r"\textbar{}", "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
           "Δ": r"$\Delta$", "†": r"\dag{}", "‡": r"\ddag{}", "→": r"$\rightarrow$"}
MATH_MARKS = {LOW_POWER: r"\dagger", BORROWED: r"\ddagger"}
ALIGN = {"method": "l", "teacher": "l", "student": "l"}


def escape(text: Any) -> str:
    """`text` as LaTeX that prints it literally, on one line."""
    return "".join(SPECIAL.get(ch, ch) for ch in " ".join(str(text).splitlines()))


def comment(text: Any, width: int = 100) -> list[str]:
    """`% ` lines holding `text` (one line of it: a newline would end the comment)."""
    flat = " ".join(str(text).split())
    return ["% " + line for line in textwrap.wrap(flat, width - 2, break_on_hyphens=False)] or ["%"]


def _header(col: Column) -> str:
    if col.key == "mean":
        return escape(col.title)  # `rougeL ↑`: the arrow becomes $\uparrow$
    if col.key == "delta":
        return r"$\Delta$" + escape(col.metric)
    return escape(col.title[:1].upper() + col.title[1:])


def _superscript(cell: Cell) -> str:
    marks = cell.stars + "".join(MATH_MARKS.get(ch, "") for ch in cell.marks)
    return f"^{{{marks}}}" if marks else ""


def _cell(col: Column, cell: Cell) -> tuple[str, str]:
    """(the cell's line, its second line: the interval, or "")."""
    if cell.text == "-":  # not measured, no comparison, not ranked, or fixed by definition
        return "--", ""
    if col.key not in ("mean", "delta", "seeds"):
        return escape(cell.text), ""
    if col.key == "seeds":
        return cell.value + (f"${_superscript(cell)}$" if cell.marks else ""), ""
    math = cell.value + (rf" \pm {cell.spread}" if cell.spread is not None else "") + _superscript(cell)
    text = rf"\textbf{{\boldmath${math}$}}" if cell.bold else f"${math}$"
    second = rf"{{\scriptsize$[{cell.interval[0]}, {cell.interval[1]}]$}}" if cell.interval else ""
    return text, second


def table_latex(table: Table, label: str) -> list[str]:
    spec = "".join(ALIGN.get(c.key, "r") for c in table.columns)
    caption = escape(table.dataset) + ". " + escape("; ".join(table.key)) + "."
    out = ["", *comment(f"{table.dataset}"), *[line for text in table.context for line in comment(text)],
           r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}", rf"\label{{{label}}}",
           rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & ".join(_header(c) for c in table.columns) + r" \\", r"\midrule"]
    for row in table.rows:
        cells = [_cell(col, cell) for col, cell in zip(table.columns, row)]
        out.append(" & ".join(first for first, _ in cells) + r" \\")
        if any(second for _, second in cells):
            out.append(" & ".join(second for _, second in cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return out


def _label(dataset: str, used: set[str]) -> str:
    base = "tab:arkd-" + (re.sub(r"[^A-Za-z0-9]+", "-", dataset).strip("-").lower() or "table")
    label, k = base, 2
    while label in used:
        label, k = f"{base}-{k}", k + 1
    used.add(label)
    return label


def render_latex(results: dict[str, Any], view: View | None = None) -> str:
    out = [*comment(f"Leaderboard: {results['recipe']} (arkd-bench report --format latex)"),
           "% Needs \\usepackage{booktabs}. Each Δ's 95% interval is the small line under it.", "%",
           *comment("Legend: " + legend(results))]
    used: set[str] = set()
    for dataset in datasets(results):
        out += table_latex(make_table(results, dataset, view), _label(dataset, used))
    unfinished = unfinished_cells(results)
    if unfinished:
        out += ["", "% Failed or unfinished cells:"]
        for c in unfinished:
            out += comment(f"{c['id']} {c['method']} seed={c['seed']} [{c['dataset']}/{c['teacher']}->"
                           f"{c['student'] or '-'}] {c['status']}: {c.get('error') or ''}")
    return "\n".join(out) + "\n"

"""The leaderboard table of one dataset as plain data, shared by the markdown, HTML and
LaTeX reporters.

One pure function of the results dict: rows are methods (teacher and SFT baselines first),
columns are mean ± std per metric with the metric's direction, then the paired difference
with the reference, its 95% interval and a significance mark (on the p-value adjusted for
the table's number of comparisons, `results["adjustment"]`). A `View` picks the metrics,
the columns and fixed decimals; by default each number gets two significant digits of its
interval's half-width. Intervals are clipped to the metric's range (`metric_info.bounds`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arkd_bench.report.notes import ADJUSTMENT_NAMES, context_lines, weak_teacher_note
from arkd_bench.report.numbers import (BORROWED, LOW_POWER, MAX_DIGITS, MIN_SEEDS, Cell, clip, delta_bounds,
                                       delta_cell, mean_cell, metric_bounds)
from arkd_bench.report.rows import Row, higher_is_better, leaderboard_rows

# Column names `report --columns` takes; `mean` and `delta` give one column per metric.
COLUMNS = ("rank", "method", "teacher", "student", "seeds", "mean", "delta")


@dataclass(frozen=True)
class View:
    """What a table shows: `metrics` and `columns` in that order (None: every metric; rank,
    method, teacher and student when they vary, seeds, mean, delta) and `digits` fixed
    decimals (None: two significant digits of each interval's half-width)."""

    metrics: tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None
    digits: int | None = None


@dataclass(frozen=True)
class Column:
    key: str  # one of COLUMNS
    title: str  # as markdown and HTML show it
    metric: str | None = None


@dataclass
class Table:
    dataset: str
    header: list[str]
    rows: list[list[Cell]]
    context: list[str]  # lines shown above the table: recipe, models, seeds, evaluation
    columns: list[Column] = field(default_factory=list)
    key: list[str] = field(default_factory=list)  # the short legend: what this table's marks mean


def teacher_defined(results: dict[str, Any], row: Row, metric: str) -> bool:
    """Whether the row is the teacher and the metric is fixed for it by definition (the
    teacher scored against itself: a divergence from the teacher is 0)."""
    return row.kind == "teacher" and \
        results.get("metric_info", {}).get(metric, {}).get("teacher_value") is not None


def _arrow(results, metric: str) -> str:
    return "↑" if higher_is_better(results, metric) else "↓"


def row_label(row: Row, rows: list[Row]) -> str:
    """The row's name plus whatever tells it apart among `rows`: its dataset, teacher and
    student whenever those vary (a merge of several grids has two rows named "teacher")."""
    varying = [k for k in ("dataset", "teacher", "student") if len({getattr(r, k) for r in rows if getattr(r, k)}) > 1]
    if not varying:
        return row.label
    where = row.dataset + ": " if "dataset" in varying else ""
    if "teacher" in varying or "student" in varying:
        where += row.teacher + (f" -> {row.student}" if row.student else "")
    return f"{row.label} [{where.rstrip(': ')}]"


def _best(results, rows: list[Row], metric: str) -> float | None:
    values = [r.metrics[metric]["mean"] for r in rows if metric in r.metrics and r.trained]
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return None
    return max(values) if higher_is_better(results, metric) else min(values)


def _method_text(row: Row) -> str:
    # The teacher and student columns tell merged rows apart (see make_table).
    notes = [f"{getattr(row, k)} {k}" for k in ("failed", "pending") if getattr(row, k)]
    return row.label + (f" ({', '.join(notes)})" if notes else "")


def default_columns(rows: list[Row]) -> list[str]:
    """rank, method, teacher and student when a merged table has several, seeds, mean, delta."""
    many_teachers = len({r.teacher for r in rows}) > 1
    many_students = len({r.student for r in rows if r.student}) > 1
    return ["rank", "method", *["teacher"] * many_teachers, *["student"] * many_students, "seeds", "mean", "delta"]


def _columns(results: dict[str, Any], rows: list[Row], metrics: list[str], primary: str | None,
             view: View) -> list[Column]:
    reference = results.get("reference", "sft")
    columns = []
    for key in view.columns or default_columns(rows):
        if key == "mean":
            columns += [Column("mean", f"{m} {_arrow(results, m)}", m) for m in metrics]
        elif key == "delta":
            columns += [Column("delta", f"Δ{m} vs {reference} [95% CI]", m) for m in metrics]
        elif key == "rank":
            columns.append(Column("rank", f"rank ({primary})" if primary else "rank"))
        else:
            columns.append(Column(key, key))
    return columns


def seeds_cell(row: Row) -> Cell:
    k = row.seed_count
    return Cell(str(k), marks=LOW_POWER if row.trained and 0 < k < MIN_SEEDS else "")


@dataclass
class _Layout:
    """What every cell of one table is laid out with, and the notes its cells leave behind."""

    results: dict[str, Any]
    view: View
    primary: str | None
    best: dict[tuple, float | None]  # (rank group, metric) -> the best student value
    clipped: list[str] = field(default_factory=list)  # Δ intervals clipped to their metric's range
    defined: list[str] = field(default_factory=list)  # metrics the teacher's value is fixed for

    def cell(self, row: Row, col: Column) -> Cell:
        m = col.metric
        if col.key == "rank":
            rank = (row.rank or {}).get(self.primary)
            return Cell("-" if rank is None else str(rank))
        if col.key == "method":
            return Cell(_method_text(row))
        if col.key == "teacher":
            return Cell(row.teacher)
        if col.key == "student":
            return Cell(row.student or "-")
        if col.key == "seeds":
            return seeds_cell(row)
        if teacher_defined(self.results, row, m):
            self.defined += [m] if m not in self.defined else []
            return Cell("-")
        if col.key == "mean":
            stat = row.metrics.get(m)
            bold = stat is not None and row.trained and stat["mean"] == self.best[row.rank_group, m]
            return Cell("-") if stat is None else mean_cell(stat, self.view.digits, bold)
        c = row.vs_reference.get(m)
        bounds = metric_bounds(self.results, m)
        if c is not None and clip(c["low"], c["high"], delta_bounds(bounds))[2]:
            self.clipped.append(f"{row.label} ({m})")
        return Cell("-") if c is None else delta_cell(c, bounds, self.view.digits)


def make_table(results: dict[str, Any], dataset: str, view: View | None = None) -> Table:
    view = view or View()
    rows = [r for r in leaderboard_rows(results) if r.dataset == dataset]
    measured = sorted({m for r in rows for m in r.metrics})
    metrics = measured if view.metrics is None else [m for m in view.metrics if m in measured]
    primary = results.get("primary_metric") if results.get("primary_metric") in measured else (measured or [None])[0]
    columns = _columns(results, rows, metrics, primary, view)
    # Best per rank group: a student is only compared with rows of its own teacher and student.
    best = {(g, m): _best(results, [r for r in rows if r.rank_group == g], m)
            for g in {r.rank_group for r in rows} for m in metrics}
    layout = _Layout(results, view, primary, best)
    body = [[layout.cell(r, col) for col in columns] for r in rows]
    context = context_lines(results, dataset, rows)
    weak_teacher = weak_teacher_note(results, rows, primary)
    context = ([weak_teacher] if weak_teacher else []) + context
    if layout.clipped:
        context.append("Δ intervals reaching past their metric's range, clipped to it: " + ", ".join(layout.clipped))
    return Table(dataset, [c.title for c in columns], body, context, columns,
                 table_key(results, columns, body, layout.defined))


def table_key(results: dict[str, Any], columns: list[Column], body: list[list[Cell]], defined: list[str]) -> list[str]:
    """The short legend: what the marks this table uses mean, one phrase each."""
    cells = [c for line in body for c in line]
    keys = {c.key for c in columns}
    key = ["mean ± std over seeds"] if "mean" in keys else []
    key += ["bold: best student"] if any(c.bold for c in cells) else []
    if "delta" in keys:
        method = (results.get("adjustment") or {}).get("method", "none")
        key.append(f"Δ vs {results.get('reference', 'sft')} [95% interval], * p<0.05, ** p<0.01 "
                   f"{ADJUSTMENT_NAMES.get(method, method)}")
    key += [f"{LOW_POWER} under {MIN_SEEDS} seeds: low power"] if any(LOW_POWER in c.marks for c in cells) else []
    key += [f"{BORROWED} pooled seed variance"] if any(BORROWED in c.marks for c in cells) else []
    key += [f"teacher -: {', '.join(defined)} fixed by definition"] if defined else []
    return key


def view_problems(results: dict[str, Any], view: View) -> list[str]:
    """What is wrong with a view of these results: unknown metrics or columns (with a
    "did you mean"), digits out of range."""
    from arkd_bench.plugins.registry import unknown_name_message

    measured = list(dict.fromkeys(m for r in leaderboard_rows(results) for m in r.metrics))
    problems = [f"--metrics: {unknown_name_message('metric', m, measured)}"
                for m in view.metrics or () if m not in measured]
    problems += [f"--columns: {unknown_name_message('column', c, list(COLUMNS))}"
                 for c in view.columns or () if c not in COLUMNS]
    if view.metrics is not None and not view.metrics:
        problems.append("--metrics: name at least one metric")
    if view.columns is not None and not view.columns:
        problems.append("--columns: name at least one column")
    if view.digits is not None and not 0 <= view.digits <= MAX_DIGITS:
        problems.append(f"--digits {view.digits}: give 0 to {MAX_DIGITS} decimals")
    return problems


def datasets(results: dict[str, Any]) -> list[str]:
    """Datasets in leaderboard order (which follows the recipe)."""
    return list(dict.fromkeys(r.dataset for r in leaderboard_rows(results)))


def unfinished_cells(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in results["cells"] if c["status"] != "done"]

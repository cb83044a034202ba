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

import math
from dataclasses import dataclass, field
from typing import Any

from arkd_bench.report.rows import REFERENCE_KINDS, higher_is_better, rank_group

# Column names `report --columns` takes; `mean` and `delta` give one column per metric.
COLUMNS = ("rank", "method", "teacher", "student", "seeds", "mean", "delta")
MAX_DIGITS = 8


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


@dataclass(frozen=True)
class Cell:
    """A table cell in parts, so each format can lay them out: `value`, then `± spread`,
    then `[low, high]`, then stars and marks (`†` low power, `‡` a borrowed seed variance)."""

    value: str
    bold: bool = False
    spread: str | None = None
    interval: tuple[str, str] | None = None
    stars: str = ""
    marks: str = ""

    @property
    def text(self) -> str:
        out = self.value + (f" ± {self.spread}" if self.spread is not None else "")
        out += f" [{self.interval[0]}, {self.interval[1]}]" if self.interval is not None else ""
        return out + self.stars + self.marks


@dataclass
class Table:
    dataset: str
    header: list[str]
    rows: list[list[Cell]]
    context: list[str]  # lines shown above the table: recipe, models, seeds, evaluation
    columns: list[Column] = field(default_factory=list)
    key: list[str] = field(default_factory=list)  # the short legend: what this table's marks mean


LOW_POWER = "†"  # fewer than 3 training seeds
BORROWED = "‡"  # a one-seed row's seed variance, pooled over its grid's multi-seed rows
MIN_SEEDS = 3

ADJUSTMENT_NAMES = {"holm": "Holm-adjusted", "bonferroni": "Bonferroni-adjusted", "none": "unadjusted"}


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def significance(p_value: float, low: float, high: float) -> str:
    """** p<0.01, * p<0.05; only when the interval agrees (excludes 0). Give it the
    adjusted p-value (`comparison_p`)."""
    if low <= 0 <= high:
        return ""
    return "**" if p_value < 0.01 else "*" if p_value < 0.05 else ""


def comparison_p(c: dict[str, Any]) -> float:
    """The p-value stars are read from: adjusted for the table's comparisons when the
    results say how (`p_adjusted`), else the raw one."""
    return c.get("p_adjusted", c["p_value"])


def delta_digits(diff: float) -> int:
    """Decimals for a difference: 2, or enough to show two significant digits of a
    difference under 0.1 (a gain of 0.004 nats must not print as +0.00 with stars)."""
    size = abs(diff)
    if size == 0 or size >= 0.1 or math.isnan(size):
        return 2
    return min(6, 1 - math.floor(math.log10(size)))


def interval_digits(low: float | None, high: float | None) -> int | None:
    """Decimals that show two significant digits of an interval's half-width (a half-width
    of 23 points: none; of 0.0019 nats: 4); None for an empty or unknown interval."""
    if low is None or high is None:
        return None
    half = (high - low) / 2
    if not math.isfinite(half) or half <= 0:
        return None
    return max(0, min(MAX_DIGITS, 1 - math.floor(math.log10(half))))


def _prints_as_zero(value: float, digits: int) -> bool:
    return float(f"{value:.{digits}f}") == 0


def metric_bounds(results: dict[str, Any], metric: str) -> tuple[float | None, float | None]:
    """(low, high) a metric's values can take, None where open (`metric_info.bounds`)."""
    low, high = results.get("metric_info", {}).get(metric, {}).get("bounds") or (None, None)
    return low, high


def delta_bounds(bounds: tuple[float | None, float | None]) -> tuple[float | None, float | None]:
    """A difference of two values in [lo, hi] lies in [-(hi - lo), hi - lo]; open otherwise."""
    low, high = bounds
    if low is None or high is None:
        return None, None
    return -(high - low), high - low


def clip(low: float, high: float, bounds: tuple[float | None, float | None]) -> tuple[float, float, bool]:
    """(low, high) clipped to `bounds`, and whether either end reached past them."""
    lo, hi = bounds
    new_low = low if lo is None else max(low, lo)
    new_high = high if hi is None else min(high, hi)
    return new_low, new_high, (new_low, new_high) != (low, high)


def teacher_defined(results: dict[str, Any], row: dict, metric: str) -> bool:
    """Whether the row is the teacher and the metric is fixed for it by definition (the
    teacher scored against itself: a divergence from the teacher is 0)."""
    return row["kind"] == "teacher" and \
        results.get("metric_info", {}).get(metric, {}).get("teacher_value") is not None


def delta_cell(c: dict[str, Any], bounds: tuple[float | None, float | None] = (None, None),
               digits: int | None = None) -> Cell:
    """`+1.2 [+0.4, +2.0]**` (`‡` when a one-seed side's seed variance was borrowed): the
    interval clipped to the difference's range (`delta_bounds` of the metric's), decimals
    from the interval's half-width unless `digits` fixes them; a starred difference gets the
    decimals it needs not to print as 0."""
    low, high, _ = clip(c["low"], c["high"], delta_bounds(bounds))
    stars = significance(comparison_p(c), c["low"], c["high"])
    d = digits if digits is not None else interval_digits(c["low"], c["high"])
    d = delta_digits(c["diff"]) if d is None else d
    while stars and d < MAX_DIGITS and _prints_as_zero(c["diff"], d):
        d += 1
    if stars and _prints_as_zero(c["diff"], d):
        stars = ""
    mark = BORROWED if c.get("seed_variance") in ("pooled", "other side") else ""
    return Cell(f"{c['diff']:+.{d}f}", interval=(f"{low:+.{d}f}", f"{high:+.{d}f}"), stars=stars, marks=mark)


def delta_text(c: dict[str, Any], bounds: tuple[float | None, float | None] = (None, None),
               digits: int | None = None) -> str:
    """`+1.23 [+0.45, +2.01]**`, `‡` when a one-seed side's seed variance was borrowed."""
    return delta_cell(c, bounds, digits).text


def mean_cell(stat: dict[str, Any], digits: int | None = None, bold: bool = False) -> Cell:
    """`25.3 ± 1.2` (no ± with one seed), decimals from the mean's 95% interval."""
    d = digits if digits is not None else interval_digits(stat.get("low"), stat.get("high"))
    d = 2 if d is None else d
    return Cell(fmt(stat["mean"], d), bold=bold, spread=fmt(stat["std"], d) if stat["n"] >= 2 else None)


def trained(row: dict) -> bool:
    """A row whose training seeds matter (not the teacher, a bound, nor a floor)."""
    return row["kind"] not in REFERENCE_KINDS


def seed_count(row: dict) -> int:
    """Distinct training seeds of the row's finished cells (merged runs that repeat a seed
    count it once)."""
    if "seeds" in row:
        return len(row["seeds"])
    return max((s["n"] for s in row["metrics"].values()), default=0)


def _seeds(values: list) -> str:
    return ", ".join(str(v) for v in values) if values else "-"


def generation_summary(generation: dict[str, Any], seeds_used: list | None) -> str:
    if not generation:
        return "generation: defaults"
    if generation.get("do_sample"):
        how = (f"sampling (temperature {generation.get('temperature')}, top_p {generation.get('top_p')}, "
               f"top_k {generation.get('top_k')}), generation seeds {_seeds(seeds_used or generation.get('seeds', []))}")
    else:
        how = "greedy decoding"
    extra = ", ".join(f"{k} {generation[k]}" for k in ("max_new_tokens", "max_prompt_length", "no_repeat_ngram_size")
                      if k in generation)
    return f"generation: {how}" + (f"; {extra}" if extra else "")


def metric_summary(metrics: dict[str, dict[str, Any]]) -> str:
    parts = []
    for name, s in sorted(metrics.items()):
        pinned = [f"{s['package']} {s.get('version', '')}".strip()] if s.get("package") else []
        pinned += [f"{k} {s[k]}" for k in ("model", "layer") if s.get(k) is not None]
        parts.append(f"{name} ({', '.join(pinned)})" if pinned else name)
    return "metrics: " + "; ".join(parts)


def context_lines(results: dict[str, Any], dataset: str, rows: list[dict]) -> list[str]:
    lines = []
    for e in [e for e in results.get("eval_settings", []) if e["dataset"] == dataset]:
        split = "validation (dev)" if e.get("split") == "valid" else "test"
        examples = f"{e['examples']} {split} examples" if e.get("examples") is not None else f"{split} examples unknown"
        lines.append(f"recipe `{e['recipe']}`: training seeds {_seeds(e['seeds'])}; {examples}; "
                     f"{generation_summary(e.get('generation') or {}, e.get('generation_seeds'))}; "
                     f"{metric_summary(e.get('metrics') or {})}")
    teachers = sorted({r["teacher"] for r in rows})
    students = sorted({r["student"] for r in rows if r["student"]})
    lines.append(f"teacher {', '.join(teachers)}; student {', '.join(students) or '-'}")
    data = data_policy_line(rows)
    return lines + ([data] if data else []) + [interval_note(rows), adjustment_note(results, dataset)]


def adjustment_note(results: dict[str, Any], dataset: str) -> str:
    """How the table's stars account for its number of comparisons."""
    adjustment = results.get("adjustment")
    if not adjustment:
        return "stars: unadjusted p-values"
    m = adjustment.get("comparisons", {}).get(dataset, 0)
    method = adjustment.get("method", "none")
    if method == "none":
        return f"stars: unadjusted p-values ({m} comparison{'' if m == 1 else 's'} in this table)"
    return (f"stars: {ADJUSTMENT_NAMES.get(method, method)} p-values over this table's "
            f"{m} comparison{'' if m == 1 else 's'}")


def data_policy_line(rows: list[dict]) -> str | None:
    """Where each row's training sequences came from, with the cost of generating them;
    None when every row trained on the ground truth (the line is left out)."""
    parts = []
    for r in rows:
        d = r.get("data_policy")
        if not d:
            continue
        if "build_seconds" in d:
            cost = f"generated once for the grid ({d['build_seconds']:.1f} s)"
        else:
            cost = f"{d['generation_seconds_per_step']:.3f} s generation per training step"
        parts.append(f"{r.get('label', r['method'])}: {d['label']}, {cost}")
    if not parts:
        return None
    return "training sequences (others: ground truth): " + "; ".join(parts)


def _borrowed(row: dict) -> bool:
    """Whether the row's interval or a comparison used a borrowed (pooled) seed variance."""
    entries = list(row["metrics"].values()) + list(row.get("vs_reference", {}).values())
    return any(e.get("seed_variance") in ("pooled", "other side") for e in entries)


def interval_note(rows: list[dict]) -> str:
    """What the table's intervals cover, said above it: a one-seed table must not read as if
    its intervals held training-seed variance, nor a table whose rows repeat one seed."""
    students = [r for r in rows if trained(r) and r["metrics"]]
    single = [r for r in students if seed_count(r) < 2]
    if not students or len(single) == len(students):
        return ("one training seed: intervals and p-values cover test-example variance only, "
                "not training-seed variance")
    line = ("intervals and p-values cover training seeds and test examples (two levels, each with "
            "Student's t at its own degrees of freedom)")
    pooled = [r.get("label", r["method"]) for r in single if _borrowed(r)]
    alone = [r.get("label", r["method"]) for r in single if not _borrowed(r)]
    if pooled:
        line += (f"; rows with one training seed ({', '.join(pooled)}) take the seed variance pooled over the "
                 f"multi-seed rows of their teacher and student, assuming methods share it ({BORROWED})")
    if alone:
        line += (f"; rows with one training seed ({', '.join(alone)}) have no seed variance to borrow: their "
                 "intervals cover test examples only")
    return line


def _arrow(results, metric: str) -> str:
    return "↑" if higher_is_better(results, metric) else "↓"


def row_label(row: dict, rows: list[dict]) -> str:
    """The row's name plus whatever tells it apart among `rows`: its dataset, teacher and
    student whenever those vary (a merge of several grids has two rows named "teacher")."""
    varying = [k for k in ("dataset", "teacher", "student") if len({r[k] for r in rows if r[k]}) > 1]
    if not varying:
        return row.get("label", row["method"])
    where = row["dataset"] + ": " if "dataset" in varying else ""
    if "teacher" in varying or "student" in varying:
        where += row["teacher"] + (f" -> {row['student']}" if row["student"] else "")
    return f"{row.get('label', row['method'])} [{where.rstrip(': ')}]"


def _best(results, rows: list[dict], metric: str) -> float | None:
    values = [r["metrics"][metric]["mean"] for r in rows if metric in r["metrics"] and r["kind"] not in REFERENCE_KINDS]
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return None
    return max(values) if higher_is_better(results, metric) else min(values)


def _method_text(row: dict) -> str:
    # The teacher and student columns tell merged rows apart (see make_table).
    notes = [f"{row[k]} {k}" for k in ("failed", "pending") if row.get(k)]
    return row.get("label", row["method"]) + (f" ({', '.join(notes)})" if notes else "")


def default_columns(rows: list[dict]) -> list[str]:
    """rank, method, teacher and student when a merged table has several, seeds, mean, delta."""
    many_teachers = len({r["teacher"] for r in rows}) > 1
    many_students = len({r["student"] for r in rows if r["student"]}) > 1
    return ["rank", "method", *["teacher"] * many_teachers, *["student"] * many_students, "seeds", "mean", "delta"]


def _columns(results: dict[str, Any], rows: list[dict], metrics: list[str], primary: str | None,
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


def seeds_cell(row: dict) -> Cell:
    k = seed_count(row)
    return Cell(str(k), marks=LOW_POWER if trained(row) and 0 < k < MIN_SEEDS else "")


def make_table(results: dict[str, Any], dataset: str, view: View | None = None) -> Table:
    view = view or View()
    rows = [r for r in results["leaderboard"] if r["dataset"] == dataset]
    measured = sorted({m for r in rows for m in r["metrics"]})
    metrics = measured if view.metrics is None else [m for m in view.metrics if m in measured]
    primary = results.get("primary_metric") if results.get("primary_metric") in measured else (measured or [None])[0]
    columns = _columns(results, rows, metrics, primary, view)
    # Best per rank group: a student is only compared with rows of its own teacher and student.
    best = {(g, m): _best(results, [r for r in rows if rank_group(r) == g], m)
            for g in {rank_group(r) for r in rows} for m in metrics}
    body, clipped, defined = [], [], []
    for r in rows:
        line = []
        for col in columns:
            m = col.metric
            if col.key == "rank":
                rank = (r.get("rank") or {}).get(primary)
                line.append(Cell("-" if rank is None else str(rank)))
            elif col.key == "method":
                line.append(Cell(_method_text(r)))
            elif col.key == "teacher":
                line.append(Cell(r["teacher"]))
            elif col.key == "student":
                line.append(Cell(r["student"] or "-"))
            elif col.key == "seeds":
                line.append(seeds_cell(r))
            elif teacher_defined(results, r, m):
                defined += [m] if m not in defined else []
                line.append(Cell("-"))
            elif col.key == "mean":
                stat = r["metrics"].get(m)
                bold = stat is not None and r["kind"] not in REFERENCE_KINDS and stat["mean"] == best[rank_group(r), m]
                line.append(Cell("-") if stat is None else mean_cell(stat, view.digits, bold))
            else:
                c = r.get("vs_reference", {}).get(m)
                if c is not None and clip(c["low"], c["high"], delta_bounds(metric_bounds(results, m)))[2]:
                    clipped.append(f"{r.get('label', r['method'])} ({m})")
                line.append(Cell("-") if c is None else delta_cell(c, metric_bounds(results, m), view.digits))
        body.append(line)
    context = context_lines(results, dataset, rows)
    if clipped:
        context.append("Δ intervals reaching past their metric's range, clipped to it: " + ", ".join(clipped))
    return Table(dataset, [c.title for c in columns], body, context, columns,
                 table_key(results, columns, body, defined))


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


def legend(results: dict[str, Any]) -> str:
    """The full legend (the tables carry a short one each)."""
    primary = results.get("primary_metric")
    adjustment = (results.get("adjustment") or {}).get("method")
    if adjustment in ("holm", "bonferroni"):
        stars = (f"* p<0.05, ** p<0.01 on p-values {ADJUSTMENT_NAMES[adjustment]} for the number of comparisons in "
                 "each table (said above it; the 95% intervals themselves are not adjusted), shown only when the "
                 "interval excludes 0")
    else:
        stars = (f"* p<0.05, ** p<0.01, unadjusted for the {results.get('comparisons', 0)} comparisons, shown only "
                 "when the interval excludes 0")
    return ("Mean ± std over training seeds (each seed: mean over test examples and generation seeds; "
            "no ± with one seed; seeds counts distinct training seeds). "
            f"{LOW_POWER} fewer than {MIN_SEEDS} training seeds: low power (wide intervals; a real difference "
            "may not reach a star). "
            f"Rank by {primary or 'the first metric'} among the students of one teacher and student model "
            "(not ranked: the teacher, a bound, "
            "and the echo/constant baselines, floors); "
            "the best student value of each metric is in bold; ↑ higher is better, ↓ lower is better. "
            "The teacher shows - where a metric is fixed by definition when the teacher is scored against itself "
            "(a divergence from the teacher is 0). "
            f"Δ is the paired difference with `{results.get('reference')}` with a 95% interval; {stars}. "
            "Numbers carry two significant digits of their 95% interval's half-width (a mean its own interval's, "
            "a Δ the Δ's), a starred Δ enough not to print as 0; intervals are clipped to the metric's range "
            "(a Δ's to ±(high - low)), and the table names any that reached past it. "
            "With 2+ training seeds the interval and p-value cover training seeds and test examples: "
            "sqrt(t_seeds^2 V_seeds + t_examples^2 V_examples), each variance part with Student's t at its own "
            "degrees of freedom (seeds - 1, examples - 1), compared seed by seed when both rows have the same seeds; "
            f"{BORROWED} a one-seed row takes the seed variance pooled over the multi-seed rows of its teacher and "
            "student. With one seed everywhere, a percentile bootstrap over test examples (seeds averaged) and "
            "the paired sign-flip permutation test.")


def view_problems(results: dict[str, Any], view: View) -> list[str]:
    """What is wrong with a view of these results: unknown metrics or columns (with a
    "did you mean"), digits out of range."""
    from arkd_bench.plugins.registry import unknown_name_message

    measured = list(dict.fromkeys(m for r in results["leaderboard"] for m in r["metrics"]))
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
    return list(dict.fromkeys(r["dataset"] for r in results["leaderboard"]))


def unfinished_cells(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in results["cells"] if c["status"] != "done"]

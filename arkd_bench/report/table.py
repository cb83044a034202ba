"""The leaderboard table of one dataset as plain data, shared by the markdown and HTML reporters.

One pure function of the results dict: rows are methods (teacher and SFT baselines first),
columns are mean ± std per metric with the metric's direction, then the paired difference
with the reference, its 95% interval and a significance mark (on the p-value adjusted for
the table's number of comparisons, `results["adjustment"]`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from arkd_bench.report.rows import REFERENCE_KINDS, higher_is_better, rank_group


@dataclass(frozen=True)
class Cell:
    text: str
    bold: bool = False


@dataclass
class Table:
    dataset: str
    header: list[str]
    rows: list[list[Cell]]
    context: list[str]  # lines shown above the table: recipe, models, seeds, evaluation


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


def delta_text(c: dict[str, Any]) -> str:
    """`+1.23 [+0.45, +2.01]**`, `‡` when a one-seed side's seed variance was borrowed."""
    d = delta_digits(c["diff"])
    mark = BORROWED if c.get("seed_variance") in ("pooled", "other side") else ""
    return (f"{c['diff']:+.{d}f} [{c['low']:+.{d}f}, {c['high']:+.{d}f}]"
            f"{significance(comparison_p(c), c['low'], c['high'])}{mark}")


def trained(row: dict) -> bool:
    """A row whose training seeds matter (not the teacher, a bound, nor a floor)."""
    return row["kind"] not in REFERENCE_KINDS


def seed_count(row: dict) -> int:
    """Distinct training seeds of the row's finished cells (merged runs that repeat a seed
    count it once)."""
    if "seeds" in row:
        return len(row["seeds"])
    return max((s["n"] for s in row["metrics"].values()), default=0)


def seeds_text(row: dict) -> str:
    k = seed_count(row)
    return f"{k}{LOW_POWER}" if trained(row) and 0 < k < MIN_SEEDS else str(k)


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
        examples = f"{e['examples']} test examples" if e.get("examples") is not None else "test examples unknown"
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


def make_table(results: dict[str, Any], dataset: str) -> Table:
    rows = [r for r in results["leaderboard"] if r["dataset"] == dataset]
    metrics = sorted({m for r in rows for m in r["metrics"]})
    primary = results.get("primary_metric") if results.get("primary_metric") in metrics else (metrics or [None])[0]
    many_teachers = len({r["teacher"] for r in rows}) > 1
    many_students = len({r["student"] for r in rows if r["student"]}) > 1
    reference = results.get("reference", "sft")
    header = [f"rank ({primary})" if primary else "rank", "method"]
    header += ["teacher"] * many_teachers + ["student"] * many_students + ["seeds"]
    header += [f"{m} {_arrow(results, m)}" for m in metrics]
    header += [f"Δ{m} vs {reference} [95% CI]" for m in metrics]
    # Best per rank group: a student is only compared with rows of its own teacher and student.
    best = {(g, m): _best(results, [r for r in rows if rank_group(r) == g], m)
            for g in {rank_group(r) for r in rows} for m in metrics}
    body = []
    for r in rows:
        rank = (r.get("rank") or {}).get(primary)
        line = [Cell("-" if rank is None else str(rank)), Cell(_method_text(r))]
        line += [Cell(r["teacher"])] * many_teachers + [Cell(r["student"] or "-")] * many_students
        line.append(Cell(seeds_text(r)))
        for m in metrics:
            stat = r["metrics"].get(m)
            if stat is None:
                line.append(Cell("-"))
                continue
            text = fmt(stat["mean"]) + (f" ± {fmt(stat['std'])}" if stat["n"] >= 2 else "")
            line.append(Cell(text, bold=r["kind"] not in REFERENCE_KINDS and stat["mean"] == best[rank_group(r), m]))
        for m in metrics:
            c = r.get("vs_reference", {}).get(m)
            line.append(Cell("-" if c is None else delta_text(c)))
        body.append(line)
    return Table(dataset, header, body, context_lines(results, dataset, rows))


def legend(results: dict[str, Any]) -> str:
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
            f"Δ is the paired difference with `{results.get('reference')}` with a 95% interval; {stars}. "
            "With 2+ training seeds the interval and p-value cover training seeds and test examples: "
            "sqrt(t_seeds^2 V_seeds + t_examples^2 V_examples), each variance part with Student's t at its own "
            "degrees of freedom (seeds - 1, examples - 1), compared seed by seed when both rows have the same seeds; "
            f"{BORROWED} a one-seed row takes the seed variance pooled over the multi-seed rows of its teacher and "
            "student. With one seed everywhere, a percentile bootstrap over test examples (seeds averaged) and "
            "the paired sign-flip permutation test.")


def datasets(results: dict[str, Any]) -> list[str]:
    """Datasets in leaderboard order (which follows the recipe)."""
    return list(dict.fromkeys(r["dataset"] for r in results["leaderboard"]))


def unfinished_cells(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in results["cells"] if c["status"] != "done"]

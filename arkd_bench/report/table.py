"""The leaderboard table of one dataset as plain data, shared by the markdown and HTML reporters.

One pure function of the results dict: rows are methods (teacher and SFT baselines first),
columns are mean ± std per metric with the metric's direction, then the paired difference
with the reference, its 95% interval and a significance mark.
"""
from __future__ import annotations

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


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def significance(p_value: float, low: float, high: float) -> str:
    """** p<0.01, * p<0.05; only when the interval agrees (excludes 0)."""
    if low <= 0 <= high:
        return ""
    return "**" if p_value < 0.01 else "*" if p_value < 0.05 else ""


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
    return lines + ([data] if data else []) + [interval_note(rows)]


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


def interval_note(rows: list[dict]) -> str:
    """What the table's intervals cover, said above it: a one-seed table must not read as if
    its intervals held training-seed variance."""
    def seeds(r):
        return max((s["n"] for s in r["metrics"].values()), default=0)

    trained = [r for r in rows if r["kind"] not in REFERENCE_KINDS and r["metrics"]]
    single = [r.get("label", r["method"]) for r in trained if seeds(r) < 2]
    if not trained or len(single) == len(trained):
        return ("one training seed: intervals and p-values cover test-example variance only, "
                "not training-seed variance")
    line = "intervals and p-values resample training seeds and test examples (two-level bootstrap)"
    return line + (f"; rows with one training seed ({', '.join(single)}) and their comparisons with one-seed "
                   "rows cover test examples only" if single else "")


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
        line.append(Cell(str(max((s["n"] for s in r["metrics"].values()), default=0))))
        for m in metrics:
            stat = r["metrics"].get(m)
            if stat is None:
                line.append(Cell("-"))
                continue
            text = fmt(stat["mean"]) + (f" ± {fmt(stat['std'])}" if stat["n"] >= 2 else "")
            line.append(Cell(text, bold=r["kind"] not in REFERENCE_KINDS and stat["mean"] == best[rank_group(r), m]))
        for m in metrics:
            c = r.get("vs_reference", {}).get(m)
            line.append(Cell("-" if c is None else f"{c['diff']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]"
                                                  f"{significance(c['p_value'], c['low'], c['high'])}"))
        body.append(line)
    return Table(dataset, header, body, context_lines(results, dataset, rows))


def legend(results: dict[str, Any]) -> str:
    primary = results.get("primary_metric")
    return ("Mean ± std over training seeds (each seed: mean over test examples and generation seeds; "
            "no ± with one seed). "
            f"Rank by {primary or 'the first metric'} among the students of one teacher and student model "
            "(not ranked: the teacher, a bound, "
            "and the echo/constant baselines, floors); "
            "the best student value of each metric is in bold; ↑ higher is better, ↓ lower is better. "
            f"Δ is the paired difference with `{results.get('reference')}` with a 95% interval; "
            "* p<0.05, ** p<0.01 (shown only when the interval excludes 0; "
            f"{results.get('comparisons', 0)} comparisons, uncorrected). With 2+ training seeds on either side the "
            "interval and p-value come from a two-level bootstrap over training seeds and test examples (paired by "
            "seed when both rows have the same seeds; Student t on its standard error); with one seed each, from a "
            "percentile bootstrap over test examples (seeds averaged) and the paired sign-flip permutation test.")


def datasets(results: dict[str, Any]) -> list[str]:
    """Datasets in leaderboard order (which follows the recipe)."""
    return list(dict.fromkeys(r["dataset"] for r in results["leaderboard"]))


def unfinished_cells(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in results["cells"] if c["status"] != "done"]

"""The prose around a leaderboard table: the settings lines above it (evaluation, models,
where training sequences came from, what the intervals cover, how stars are adjusted) and
the full legend under the last one."""
from __future__ import annotations

from typing import Any

from arkd_bench.report.numbers import BORROWED, LOW_POWER, MIN_SEEDS
from arkd_bench.report.rows import Row, higher_is_better

ADJUSTMENT_NAMES = {"holm": "Holm-adjusted", "bonferroni": "Bonferroni-adjusted", "none": "unadjusted"}



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


def context_lines(results: dict[str, Any], dataset: str, rows: list[Row]) -> list[str]:
    lines = []
    for e in [e for e in results.get("eval_settings", []) if e["dataset"] == dataset]:
        split = "validation (dev)" if e.get("split") == "valid" else "test"
        examples = f"{e['examples']} {split} examples" if e.get("examples") is not None else f"{split} examples unknown"
        lines.append(f"recipe `{e['recipe']}`: training seeds {_seeds(e['seeds'])}; {examples}; "
                     f"{generation_summary(e.get('generation') or {}, e.get('generation_seeds'))}; "
                     f"{metric_summary(e.get('metrics') or {})}")
    teachers = sorted({r.teacher for r in rows})
    students = sorted({r.student for r in rows if r.student})
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


def data_policy_line(rows: list[Row]) -> str | None:
    """Where each row's training sequences came from, with the cost of generating them;
    None when every row trained on the ground truth (the line is left out)."""
    parts = []
    for r in rows:
        d = r.data_policy
        if not d:
            continue
        if "build_seconds" in d:
            cost = f"generated once for the grid ({d['build_seconds']:.1f} s)"
        else:
            cost = f"{d['generation_seconds_per_step']:.3f} s generation per training step"
        parts.append(f"{r.label}: {d['label']}, {cost}")
    if not parts:
        return None
    return "training sequences (others: ground truth): " + "; ".join(parts)


def _borrowed(row: Row) -> bool:
    """Whether the row's interval or a comparison used a borrowed (pooled) seed variance."""
    entries = list(row.metrics.values()) + list(row.vs_reference.values())
    return any(e.get("seed_variance") in ("pooled", "other side") for e in entries)


def interval_note(rows: list[Row]) -> str:
    """What the table's intervals cover, said above it: a one-seed table must not read as if
    its intervals held training-seed variance, nor a table whose rows repeat one seed."""
    students = [r for r in rows if r.trained and r.metrics]
    single = [r for r in students if r.seed_count < 2]
    if not students or len(single) == len(students):
        return ("one training seed: intervals and p-values cover test-example variance only, "
                "not training-seed variance")
    line = ("intervals and p-values cover training seeds and test examples (two levels, each with "
            "Student's t at its own degrees of freedom)")
    pooled = [r.label for r in single if _borrowed(r)]
    alone = [r.label for r in single if not _borrowed(r)]
    if pooled:
        line += (f"; rows with one training seed ({', '.join(pooled)}) take the seed variance pooled over the "
                 f"multi-seed rows of their teacher and student, assuming methods share it ({BORROWED})")
    if alone:
        line += (f"; rows with one training seed ({', '.join(alone)}) have no seed variance to borrow: their "
                 "intervals cover test examples only")
    return line


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


def weak_teacher_note(results: dict[str, Any], rows: list[Row], metric: str | None) -> str | None:
    """A warning when no teacher beats the best trivial baseline (echo, constant) on the primary
    metric: the students are then distilled from a model no better than repeating the prompt."""
    def mean(row: Row):
        return row.metrics.get(metric, {}).get("mean") if metric else None

    floors = [r for r in rows if r.kind in ("echo", "constant") and mean(r) is not None]
    teachers = [r for r in rows if r.kind == "teacher" and mean(r) is not None]
    if not floors or not teachers:
        return None
    sign = 1 if higher_is_better(results, metric) else -1
    floor = max(floors, key=lambda r: sign * mean(r))
    best = max(teachers, key=lambda r: sign * mean(r))
    if sign * mean(best) > sign * mean(floor):
        return None
    return (f"**the teacher does not beat the trivial baselines** on {metric} ({best.teacher} {mean(best):.2f} "
            f"against {floor.kind} {mean(floor):.2f}): the students' ranking says little about distillation "
            "(recipes/smollm2-kd.yaml distils a pretrained teacher that is above both)")

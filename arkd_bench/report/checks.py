"""CI checks on merged run results: a recipe's `checks:` (golden baselines: `report.baseline`).

Recipe checks (CheckSpec):
  {method: A, metric: M, beats: B}                A's mean beats B's in M's direction
  {..., beats: B, significant: true}              ... and the paired comparison of A - B (the
                                                  leaderboard's: over training seeds and test
                                                  examples when either row has 2+ seeds) has p < 0.05
                                                  and a 95% interval that excludes 0; a check tests
                                                  one comparison, so its p-value is not adjusted
                                                  for multiplicity (the leaderboard's stars are)
  {method: A, metric: M, at_least: x, at_most: y} A's mean (over seeds) within the bounds
  metric `weight/<term>` or `strategy/<name>`     bounds on a value of A's training logs:
                                                  min and max over every logged step and seed
  dataset/teacher/student/recipe: NAME           scope: only rows of that dataset, teacher,
                                                  student or recipe name (default: all rows)
A row with failed or unfinished cells fails every check that reads it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arkd_bench.recipe.schema import LOG_PREFIXES
from arkd_bench.report.numbers import delta_digits
from arkd_bench.report.read import train_logs
from arkd_bench.report.rows import Collected, Row, higher_is_better

if TYPE_CHECKING:
    from arkd_bench.recipe.loader import Problem

ALPHA = 0.05
SCOPE_FIELDS = ("dataset", "teacher", "student", "recipe")


@dataclass
class CheckResult:
    check: str
    where: str
    numbers: str
    passed: bool
    reason: str = ""
    file: str | None = None  # where the check is written, for CI annotations
    line: int | None = None


@dataclass
class LocatedCheck:
    """A CheckSpec and the file and line it was written at (None for a check made in code)."""

    spec: Any
    file: str | None = None
    line: int | None = None


def read_checks(path: str | Path, collected: Collected | None = None) -> list[LocatedCheck]:
    """The `checks:` of a recipe (or any YAML file with a `checks:` list), validated, and
    with `collected` every name they use checked against those runs; raises RecipeError
    with every problem, each at its file:line."""
    from pydantic import ValidationError

    from arkd_bench.recipe.loader import Problem, RecipeError, load_yaml, pydantic_problems, read_text
    from arkd_bench.recipe.schema import CheckSpec

    file = str(path)
    loaded = load_yaml(read_text(Path(path)), file)
    raw_checks = loaded.data.get("checks") or []
    if not isinstance(raw_checks, list):
        raise RecipeError(file, [Problem(("checks",), "a list of checks")], loaded.lines)
    found, problems = [], []
    for i, raw in enumerate(raw_checks):
        try:
            spec = CheckSpec.model_validate(raw)
        except ValidationError as exc:
            problems += pydantic_problems(exc, ("checks", i), model=CheckSpec)
            continue
        found.append(LocatedCheck(spec, file, loaded.lines.get(("checks", i), 1)))
    if not problems and collected is not None:
        problems = name_problems(collected, [c.spec for c in found])
    if problems:
        raise RecipeError(file, problems, loaded.lines)
    return found


def recipe_checks(run_dirs: list[str | Path]) -> list[LocatedCheck]:
    """The `checks:` of every run's recipe, each once (shards repeat them)."""
    located, seen = [], set()
    for path in run_dirs:
        for check in read_checks(Path(path) / "recipe.yaml"):
            key = tuple(sorted(check.spec.model_dump().items()))
            if key not in seen:
                seen.add(key)
                located.append(check)
    return located


def name_problems(collected: Collected, specs: list[Any]) -> list[Problem]:
    """A Problem at `checks[i].field` for each name a check uses that the runs do not have:
    methods, scope names, evaluation metrics (recipe validation's own check, with the runs'
    names)."""
    from arkd_bench.recipe.validate import check_name_problems

    rows = collected.rows
    methods = list(dict.fromkeys(r.method for r in rows))
    names = {"method": methods, "beats": methods, "dataset": [r.dataset for r in rows],
             "teacher": [r.teacher for r in rows], "student": [r.student for r in rows if r.student],
             "recipe": [name for r in rows for name in r.recipes], "metric": [m for r in rows for m in r.metrics]}
    names = {k: list(dict.fromkeys(v)) for k, v in names.items()}
    return [problem for i, spec in enumerate(specs) for problem in check_name_problems(spec, ("checks", i), names)]


# -- helpers ------------------------------------------------------------------------------

def where_text(row: Row) -> str:
    return f"{row.dataset}: {row.teacher} -> {row.student or '-'}"


def incomplete(collected: Collected, row: Row) -> str | None:
    """Why a row cannot be trusted (failed or unfinished cells), or None."""
    bad = [collected.cell(c) for c in row.cells]
    bad = [c for c in bad if c["status"] != "done"]
    if not bad:
        return None
    details = "; ".join(f"seed {c['seed']} {c['status']}" + (f" ({c['error']})" if c.get("error") else "")
                        for c in bad)
    return f"{row.label} has {len(bad)} failed or unfinished cell(s): {details}"


def _is_log_metric(metric: str) -> bool:
    return metric.startswith(LOG_PREFIXES)


def _neighbours(rows: list[Row], row: Row, method: str) -> list[Row]:
    """Rows of `method` comparable with `row`: same dataset and teacher; same student, or a
    teacher row on either side (it has no student)."""
    found = [r for r in rows if r.method == method and r.dataset == row.dataset and r.teacher == row.teacher
             and (r.student == row.student or r.student is None or row.student is None)]
    same_recipe = [r for r in found if set(r.recipes) & set(row.recipes)]
    return same_recipe or found


def metric_mean(row: Row, metric: str) -> float | None:
    stat = row.metrics.get(metric)
    return None if stat is None or math.isnan(stat["mean"]) else stat["mean"]


def missing_metric(row: Row, metric: str) -> str:
    return f"{metric} was not measured for {row.label} (measured: {', '.join(row.metrics) or 'nothing'})"


# -- recipe checks ---------------------------------------------------------------------------

def in_scope(spec, row: Row) -> bool:
    """Whether a check's scope covers a row; a teacher row has no student, so a student
    scope keeps it."""
    return ((spec.dataset is None or row.dataset == spec.dataset)
            and (spec.teacher is None or row.teacher == spec.teacher)
            and (spec.student is None or row.student in (spec.student, None))
            and (spec.recipe is None or spec.recipe in row.recipes))


def _scope_text(spec) -> str:
    parts = [f"{k}={getattr(spec, k)}" for k in SCOPE_FIELDS if getattr(spec, k) is not None]
    return f" ({', '.join(parts)})" if parts else ""


def run_checks(collected: Collected, checks: list[LocatedCheck | Any]) -> list[CheckResult]:
    """Each check on each row of its method within its scope; a check that matches no
    row fails and says which name did not match."""
    out = []
    rows = collected.rows
    located = [c if isinstance(c, LocatedCheck) else LocatedCheck(c) for c in checks]
    unknown: dict[int, list[str]] = {}
    for problem in name_problems(collected, [c.spec for c in located]):
        if problem.path[2] != "metric":  # a missing metric is reported per row, with what was measured
            unknown.setdefault(problem.path[1], []).append(problem.message)
    for i, check in enumerate(located):
        spec = check.spec
        mine = [r for r in rows if r.method == spec.method and in_scope(spec, r)]
        if not mine:
            reason = "; ".join(unknown.get(i, [])) or f"no leaderboard row for method {spec.method!r} in scope"
            out.append(CheckResult(_describe(spec) + _scope_text(spec), "-", "-", False, reason,
                                   check.file, check.line))
            continue
        for row in mine:
            if spec.beats is not None:
                out.append(_beats(collected, check, row))
            if spec.at_least is not None or spec.at_most is not None:
                out.append(_bounds(collected, check, row))
    return out


def _beats_text(spec) -> str:
    return f"{spec.method} beats {spec.beats} on {spec.metric}" + (" significantly" if spec.significant else "")


def _describe(spec) -> str:
    parts = []
    if spec.beats is not None:
        parts.append(_beats_text(spec))
    if spec.at_least is not None or spec.at_most is not None:
        parts.append(_bounds_text(spec))
    return "; ".join(parts)


def _bounds_text(spec) -> str:
    if spec.at_least is not None and spec.at_most is not None:
        return f"{spec.method} {spec.metric} in [{spec.at_least:g}, {spec.at_most:g}]"
    if spec.at_least is not None:
        return f"{spec.method} {spec.metric} >= {spec.at_least:g}"
    return f"{spec.method} {spec.metric} <= {spec.at_most:g}"


def _beats(collected: Collected, check: LocatedCheck, a: Row) -> CheckResult:
    spec = check.spec
    result = CheckResult(_beats_text(spec), where_text(a), "-", False, file=check.file, line=check.line)
    if _is_log_metric(spec.metric):
        result.reason = f"`beats` compares evaluation metrics; {spec.metric} is a training-log value (use at_least/at_most)"
        return result
    others = [r for r in _neighbours(collected.rows, a, spec.beats) if in_scope(spec, r)]
    if not others:
        result.reason = f"no row for method {spec.beats!r} next to {a.label} ({where_text(a)})"
        return result
    b = others[0]
    reasons = [r for r in (incomplete(collected, a), incomplete(collected, b)) if r]
    for row in (a, b):
        if metric_mean(row, spec.metric) is None:
            reasons.append(missing_metric(row, spec.metric))
    if reasons:
        result.reason = "; ".join(dict.fromkeys(reasons))
        return result
    ma, mb = metric_mean(a, spec.metric), metric_mean(b, spec.metric)
    hib = higher_is_better(collected.results, spec.metric)
    result.numbers = f"{a.label} {ma:.2f} vs {b.label} {mb:.2f}"
    if not (ma > mb if hib else ma < mb):
        reasons.append(f"{a.label} does not beat {b.label}: {ma:.2f} vs {mb:.2f} "
                       f"({'higher' if hib else 'lower'} is better)")
    if spec.significant:
        reasons += _significance(collected, a, b, spec.metric, result)
    result.passed, result.reason = not reasons, "; ".join(reasons)
    return result


def _significance(collected: Collected, a: Row, b: Row, metric: str, result: CheckResult) -> list[str]:
    """Why the paired comparison of a - b is not significant (none when it is); its numbers
    are added to `result`."""
    c = collected.compare(a, b, metric)
    if c is None:
        return ["fewer than 2 test examples scored by both: no significance test possible"]
    over = f"{c.n} paired test examples" + (f" and {c.seeds[0]} vs {c.seeds[1]} training seeds"
                                             if c.interval != "examples" else " (one training seed)")
    if c.seed_variance in ("pooled", "other side"):
        over += (" (the one-seed side's seed variance pooled over the grid's multi-seed rows)"
                 if c.seed_variance == "pooled" else " (the one-seed side borrows the other's seed variance)")
    d = delta_digits(c.diff)
    result.numbers += (f"; diff {c.diff:+.{d}f} [{c.low:+.{d}f}, {c.high:+.{d}f}], "
                       f"p={c.p_value:.3g} (one comparison, unadjusted), n={c.n}")
    reasons = []
    if c.p_value >= ALPHA:
        reasons.append(f"not significant: p={c.p_value:.3g} >= {ALPHA} over {over}")
    if c.low <= 0 <= c.high:
        reasons.append(f"the 95% interval [{c.low:+.{d}f}, {c.high:+.{d}f}] includes 0")
    return reasons


def _log_values(collected: Collected, row: Row, key: str) -> tuple[list[float], set[str], int]:
    """Every logged value of `key` over the row's finished cells, the keys seen, and the seed count."""
    logs = train_logs(collected.results, row.cells)
    values = [float(r[key]) for log in logs.values() for r in log if isinstance(r.get(key), (int, float))]
    seen = {k for log in logs.values() for r in log for k in r if _is_log_metric(k)}
    return values, seen, len(logs)


def _bounds(collected: Collected, check: LocatedCheck, row: Row) -> CheckResult:
    spec = check.spec
    result = CheckResult(_bounds_text(spec), where_text(row), "-", False, file=check.file, line=check.line)
    reason = incomplete(collected, row)
    if reason:
        result.reason = reason
        return result
    if _is_log_metric(spec.metric):
        values, seen, seeds = _log_values(collected, row, spec.metric)
        if not values:
            result.reason = (f"no `{spec.metric}` in the training logs of {row.label} "
                             f"(logged: {', '.join(sorted(seen)) or 'nothing; only distilled methods log weights'})")
            return result
        low, high = min(values), max(values)
        result.numbers = f"min {low:.4g}, max {high:.4g} over {len(values)} logged steps ({seeds} seed{'' if seeds == 1 else 's'})"
    else:
        mean = metric_mean(row, spec.metric)
        if mean is None:
            result.reason = missing_metric(row, spec.metric)
            return result
        low = high = mean
        stat = row.metrics[spec.metric]
        result.numbers = f"mean {mean:.2f} ± {stat['std']:.2f} over {stat['n']} seed{'' if stat['n'] == 1 else 's'}"
    reasons = []
    if math.isnan(low) or math.isnan(high):
        reasons.append("value is NaN")
    if spec.at_least is not None and low < spec.at_least:
        reasons.append(f"{'min' if _is_log_metric(spec.metric) else 'mean'} {low:.4g} < {spec.at_least:g}")
    if spec.at_most is not None and high > spec.at_most:
        reasons.append(f"{'max' if _is_log_metric(spec.metric) else 'mean'} {high:.4g} > {spec.at_most:g}")
    result.passed, result.reason = not reasons, "; ".join(reasons)
    return result

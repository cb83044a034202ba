"""CI checks on merged run results: a recipe's `checks:` and a golden-baseline comparison.

Recipe checks (CheckSpec):
  {method: A, metric: M, beats: B}                A's mean beats B's in M's direction
  {..., beats: B, significant: true}              ... and the paired comparison of A - B over
                                                  test examples (seeds averaged) has p < 0.05
                                                  and a 95% interval that excludes 0
  {method: A, metric: M, at_least: x, at_most: y} A's mean (over seeds) within the bounds
  metric `weight/<term>` or `strategy/<name>`     bounds on a value of A's training logs:
                                                  min and max over every logged step and seed
A row with failed or unfinished cells fails every check that reads it.

Golden baseline: per-row metric means written by `write_baseline`; a row fails when it
moved in its metric's worse direction by more than the tolerance (absolute, per metric).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from arkd_bench.report.results import Collected, higher_is_better, train_logs

LOG_PREFIXES = ("weight/", "strategy/")
ALPHA = 0.05
DEFAULT_TOLERANCE = 1.0  # metrics are on a x100 scale: one point
BASELINE_VERSION = 1


@dataclass
class CheckResult:
    check: str
    where: str
    numbers: str
    passed: bool
    reason: str = ""


def recipe_checks(run_dirs: list[str | Path]) -> list[Any]:
    """The `checks:` of every run's recipe, each once (shards repeat them)."""
    from arkd_bench.recipe.schema import CheckSpec

    specs, seen = [], set()
    for path in run_dirs:
        recipe = yaml.safe_load((Path(path) / "recipe.yaml").read_text(encoding="utf-8")) or {}
        for raw in recipe.get("checks") or []:
            spec = CheckSpec.model_validate(raw)
            key = tuple(sorted(spec.model_dump().items()))
            if key not in seen:
                seen.add(key)
                specs.append(spec)
    return specs


# -- helpers ------------------------------------------------------------------------------

def _where(row: dict) -> str:
    return f"{row['dataset']}: {row['teacher']} -> {row['student'] or '-'}"


def _incomplete(collected: Collected, row: dict) -> str | None:
    """Why a row cannot be trusted (failed or unfinished cells), or None."""
    bad = [collected.cell(c) for c in row["cells"]]
    bad = [c for c in bad if c["status"] != "done"]
    if not bad:
        return None
    details = "; ".join(f"seed {c['seed']} {c['status']}" + (f" ({c['error']})" if c.get("error") else "")
                        for c in bad)
    return f"{row['label']} has {len(bad)} failed or unfinished cell(s): {details}"


def _is_log_metric(metric: str) -> bool:
    return metric.startswith(LOG_PREFIXES)


def _neighbours(rows: list[dict], row: dict, method: str) -> list[dict]:
    """Rows of `method` comparable with `row`: same dataset and teacher; same student, or a
    teacher row on either side (it has no student)."""
    found = [r for r in rows if r["method"] == method and r["dataset"] == row["dataset"]
             and r["teacher"] == row["teacher"]
             and (r["student"] == row["student"] or r["student"] is None or row["student"] is None)]
    same_recipe = [r for r in found if set(r["recipes"]) & set(row["recipes"])]
    return same_recipe or found


def _metric_mean(row: dict, metric: str) -> float | None:
    stat = row["metrics"].get(metric)
    return None if stat is None or math.isnan(stat["mean"]) else stat["mean"]


def _missing_metric(row: dict, metric: str) -> str:
    return f"{metric} was not measured for {row['label']} (measured: {', '.join(row['metrics']) or 'nothing'})"


# -- recipe checks ---------------------------------------------------------------------------

def run_checks(collected: Collected, specs: list[Any]) -> list[CheckResult]:
    out = []
    rows = collected.rows
    for spec in specs:
        mine = [r for r in rows if r["method"] == spec.method]
        if not mine:
            names = ", ".join(dict.fromkeys(r["method"] for r in rows))
            out.append(CheckResult(_describe(spec), "-", "-", False,
                                   f"no leaderboard row for method {spec.method!r} (rows: {names})"))
            continue
        for row in mine:
            if spec.beats is not None:
                out.append(_beats(collected, spec, row))
            if spec.at_least is not None or spec.at_most is not None:
                out.append(_bounds(collected, spec, row))
    return out


def _describe(spec) -> str:
    parts = []
    if spec.beats is not None:
        parts.append(f"{spec.method} beats {spec.beats} on {spec.metric}" + (" significantly" if spec.significant else ""))
    if spec.at_least is not None or spec.at_most is not None:
        parts.append(_bounds_text(spec))
    return "; ".join(parts)


def _bounds_text(spec) -> str:
    if spec.at_least is not None and spec.at_most is not None:
        return f"{spec.method} {spec.metric} in [{spec.at_least:g}, {spec.at_most:g}]"
    if spec.at_least is not None:
        return f"{spec.method} {spec.metric} >= {spec.at_least:g}"
    return f"{spec.method} {spec.metric} <= {spec.at_most:g}"


def _beats(collected: Collected, spec, a: dict) -> CheckResult:
    text = f"{spec.method} beats {spec.beats} on {spec.metric}" + (" significantly" if spec.significant else "")
    result = CheckResult(text, _where(a), "-", False)
    if _is_log_metric(spec.metric):
        result.reason = f"`beats` compares evaluation metrics; {spec.metric} is a training-log value (use at_least/at_most)"
        return result
    others = _neighbours(collected.rows, a, spec.beats)
    if not others:
        result.reason = f"no row for method {spec.beats!r} next to {a['label']} ({_where(a)})"
        return result
    b = others[0]
    reasons = [r for r in (_incomplete(collected, a), _incomplete(collected, b)) if r]
    for row in (a, b):
        if _metric_mean(row, spec.metric) is None:
            reasons.append(_missing_metric(row, spec.metric))
    if reasons:
        result.reason = "; ".join(dict.fromkeys(reasons))
        return result
    ma, mb = _metric_mean(a, spec.metric), _metric_mean(b, spec.metric)
    hib = higher_is_better(collected.results, spec.metric)
    result.numbers = f"{a['label']} {ma:.2f} vs {b['label']} {mb:.2f}"
    if not (ma > mb if hib else ma < mb):
        reasons.append(f"{a['label']} does not beat {b['label']}: {ma:.2f} vs {mb:.2f} "
                       f"({'higher' if hib else 'lower'} is better)")
    if spec.significant:
        c = collected.compare(a, b, spec.metric)
        if c is None:
            reasons.append("fewer than 2 test examples scored by both: no significance test possible")
        else:
            result.numbers += f"; diff {c.diff:+.2f} [{c.low:+.2f}, {c.high:+.2f}], p={c.p_value:.3g}, n={c.n}"
            if c.p_value >= ALPHA:
                reasons.append(f"not significant: p={c.p_value:.3g} >= {ALPHA} over {c.n} paired test examples")
            if c.low <= 0 <= c.high:
                reasons.append(f"the 95% interval [{c.low:+.2f}, {c.high:+.2f}] includes 0")
    result.passed, result.reason = not reasons, "; ".join(reasons)
    return result


def _log_values(collected: Collected, row: dict, key: str) -> tuple[list[float], set[str], int]:
    """Every logged value of `key` over the row's finished cells, the keys seen, and the seed count."""
    logs = train_logs(collected.results, row["cells"])
    values = [float(r[key]) for log in logs.values() for r in log if isinstance(r.get(key), (int, float))]
    seen = {k for log in logs.values() for r in log for k in r if _is_log_metric(k)}
    return values, seen, len(logs)


def _bounds(collected: Collected, spec, row: dict) -> CheckResult:
    result = CheckResult(_bounds_text(spec), _where(row), "-", False)
    reason = _incomplete(collected, row)
    if reason:
        result.reason = reason
        return result
    if _is_log_metric(spec.metric):
        values, seen, seeds = _log_values(collected, row, spec.metric)
        if not values:
            result.reason = (f"no `{spec.metric}` in the training logs of {row['label']} "
                             f"(logged: {', '.join(sorted(seen)) or 'nothing; only distilled methods log weights'})")
            return result
        low, high = min(values), max(values)
        result.numbers = f"min {low:.4g}, max {high:.4g} over {len(values)} logged steps ({seeds} seeds)"
    else:
        mean = _metric_mean(row, spec.metric)
        if mean is None:
            result.reason = _missing_metric(row, spec.metric)
            return result
        low = high = mean
        stat = row["metrics"][spec.metric]
        result.numbers = f"mean {mean:.2f} ± {stat['std']:.2f} over {stat['n']} seeds"
    reasons = []
    if math.isnan(low) or math.isnan(high):
        reasons.append("value is NaN")
    if spec.at_least is not None and low < spec.at_least:
        reasons.append(f"{'min' if _is_log_metric(spec.metric) else 'mean'} {low:.4g} < {spec.at_least:g}")
    if spec.at_most is not None and high > spec.at_most:
        reasons.append(f"{'max' if _is_log_metric(spec.metric) else 'mean'} {high:.4g} > {spec.at_most:g}")
    result.passed, result.reason = not reasons, "; ".join(reasons)
    return result


# -- golden baseline ---------------------------------------------------------------------------

@dataclass
class Tolerance:
    """Absolute tolerance: a default and per-metric overrides."""

    default: float = DEFAULT_TOLERANCE
    per_metric: dict[str, float] = field(default_factory=dict)

    def of(self, metric: str) -> float:
        return self.per_metric.get(metric, self.default)

    def to_json(self) -> dict[str, float]:
        return {"default": self.default, **self.per_metric}

    @classmethod
    def parse(cls, values: list[str], stored: dict[str, float] | None = None) -> Tolerance:
        """`values` are `FLOAT` (the default) or `METRIC=FLOAT`; they override the tolerance
        stored in the baseline file, which overrides the built-in default."""
        stored = dict(stored or {})
        tolerance = cls(float(stored.pop("default", DEFAULT_TOLERANCE)), {k: float(v) for k, v in stored.items()})
        for value in values:
            metric, _, number = value.rpartition("=")
            try:
                amount = float(number)
            except ValueError:
                raise ValueError(f"--tolerance {value!r}: expected FLOAT or METRIC=FLOAT, e.g. 0.5 or rougeL=1.5") from None
            if amount < 0 or math.isnan(amount):
                raise ValueError(f"--tolerance {value!r}: must be >= 0")
            if metric:
                tolerance.per_metric[metric] = amount
            else:
                tolerance.default = amount
        return tolerance


def _row_id(row: dict) -> tuple:
    return (row["dataset"], row["teacher"], row["student"], row.get("label", row["method"]))


def write_baseline(collected: Collected, path: Path, tolerance: Tolerance | None = None) -> dict[str, Any]:
    """Per-row metric means of complete rows; refuses when a row has failed or unfinished cells,
    so a broken run never becomes the reference."""
    problems = [r for r in (_incomplete(collected, row) for row in collected.rows) if r]
    if problems:
        raise ValueError("not writing a baseline from an incomplete run: " + "; ".join(problems))
    from arkd_bench.results.store import atomic_write_json

    results = collected.results
    baseline = {
        "baseline_version": BASELINE_VERSION, "recipe": results["recipe"],
        "metric_info": results.get("metric_info", {}),
        "rows": [{"dataset": r["dataset"], "teacher": r["teacher"], "student": r["student"],
                  "method": r.get("label", r["method"]),
                  "metrics": {m: s["mean"] for m, s in r["metrics"].items()},
                  "std": {m: s["std"] for m, s in r["metrics"].items()},
                  "n": {m: s["n"] for m, s in r["metrics"].items()}}
                 for r in collected.rows],
    }
    if tolerance is not None:
        baseline["tolerance"] = tolerance.to_json()
    atomic_write_json(Path(path), baseline)
    return baseline


def compare_baseline(collected: Collected, baseline: dict[str, Any], tolerance: Tolerance) -> list[CheckResult]:
    current = {_row_id(r): r for r in collected.rows}
    info = {**baseline.get("metric_info", {}), **collected.results.get("metric_info", {})}
    out = []
    for golden in baseline.get("rows", []):
        key = (golden["dataset"], golden["teacher"], golden["student"], golden["method"])
        where = f"{golden['dataset']}: {golden['teacher']} -> {golden['student'] or '-'}"
        row = current.get(key)
        for metric, expected in sorted(golden["metrics"].items()):
            result = CheckResult(f"{golden['method']} {metric} vs baseline", where, f"baseline {expected:.2f}", False)
            out.append(result)
            if row is None:
                result.reason = f"row {golden['method']!r} is not in the run"
                continue
            reason = _incomplete(collected, row)
            if reason:
                result.reason = reason
                continue
            value = _metric_mean(row, metric)
            if value is None:
                result.reason = _missing_metric(row, metric)
                continue
            hib = info.get(metric, {}).get("higher_is_better", True)
            worse_by = (expected - value) if hib else (value - expected)
            tol = tolerance.of(metric)
            result.numbers = f"baseline {expected:.2f} -> {value:.2f} ({value - expected:+.2f}; tolerance {tol:g})"
            if worse_by > tol:
                result.reason = (f"{'dropped' if hib else 'rose'} by {worse_by:.2f} > tolerance {tol:g} "
                                 f"({'higher' if hib else 'lower'} is better)")
            else:
                result.passed = True
                if -worse_by > tol:
                    result.reason = "improved beyond the tolerance; consider --write-baseline"
    return out

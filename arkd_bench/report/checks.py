"""CI checks on merged run results: a recipe's `checks:` and a golden-baseline comparison.

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

Golden baseline: per-row metric means and 95% intervals written by `write_baseline`, with
the resolved spec of each distilled row's method (objective, weighting and its options, data
policy) and its hash; a row fails when it moved in its metric's worse direction by more than
the tolerance (see `Tolerance`: absolute, relative or both per metric; by default the
baseline's own interval, capped by what the metric's scale calls a real change), and a row
whose method spec is not the one the baseline recorded fails as "changed: re-baseline"
(its numbers belong to another method, whether they rose or fell).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from arkd_bench.recipe.schema import LOG_PREFIXES
from arkd_bench.report.read import train_logs
from arkd_bench.report.rows import Collected, higher_is_better
from arkd_bench.report.table import delta_digits

ALPHA = 0.05
BASELINE_VERSION = 3  # 2 adds each metric's interval (low, high) and scale; 3 each method's spec and its hash


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
    """A CheckSpec and the file and line it was written at."""

    spec: Any
    file: str
    line: int


SCOPE_FIELDS = ("dataset", "teacher", "student", "recipe")


def read_checks(path: str | Path) -> list[LocatedCheck]:
    """The `checks:` of a recipe (or any YAML file with a `checks:` list), validated;
    raises RecipeError with every problem, each at its file:line."""
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


def scope_problems(collected: Collected, specs: list[Any]) -> list[tuple[int, str, str]]:
    """(check index, field, message) for each name a check uses that the runs do not have:
    methods, scope names, evaluation metrics."""
    from arkd_bench.plugins.registry import unknown_name_message

    rows = collected.rows
    known = {"method": [r["method"] for r in rows], "dataset": [r["dataset"] for r in rows],
             "teacher": [r["teacher"] for r in rows], "student": [r["student"] for r in rows if r["student"]],
             "recipe": [name for r in rows for name in r["recipes"]]}
    known = {k: list(dict.fromkeys(v)) for k, v in known.items()}
    metrics = list(dict.fromkeys(m for r in rows for m in r["metrics"]))
    problems = []
    for i, spec in enumerate(specs):
        for field_name in ("method", "beats", *SCOPE_FIELDS):
            value = getattr(spec, field_name)
            names = known["method" if field_name == "beats" else field_name]
            if value is not None and value not in names:
                problems.append((i, field_name, unknown_name_message(field_name, value, names)))
        if not _is_log_metric(spec.metric) and spec.metric not in metrics:
            problems.append((i, "metric", unknown_name_message("metric", spec.metric, metrics)))
    return problems


def validate_against_runs(path: str | Path, checks: list[LocatedCheck], collected: Collected) -> None:
    """Raise RecipeError (file:line: checks[i].field: ...) for every name in `checks` that
    the run folders do not contain."""
    from arkd_bench.recipe.loader import Problem, RecipeError, load_yaml, read_text

    problems = [Problem(("checks", i, field_name), message)
                for i, field_name, message in scope_problems(collected, [c.spec for c in checks])]
    if problems:
        raise RecipeError(str(path), problems, load_yaml(read_text(Path(path)), str(path)).lines)


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

def in_scope(spec, row: dict) -> bool:
    """Whether a check's scope covers a row; a teacher row has no student, so a student
    scope keeps it."""
    return ((spec.dataset is None or row["dataset"] == spec.dataset)
            and (spec.teacher is None or row["teacher"] == spec.teacher)
            and (spec.student is None or row["student"] in (spec.student, None))
            and (spec.recipe is None or spec.recipe in row["recipes"]))


def _scope_text(spec) -> str:
    parts = [f"{k}={getattr(spec, k)}" for k in SCOPE_FIELDS if getattr(spec, k) is not None]
    return f" ({', '.join(parts)})" if parts else ""


def run_checks(collected: Collected, checks: list[LocatedCheck | Any]) -> list[CheckResult]:
    """Each check on each row of its method within its scope; a check that matches no
    row fails and says which name did not match."""
    out = []
    rows = collected.rows
    unknown = {}
    specs = [c.spec if isinstance(c, LocatedCheck) else c for c in checks]
    for i, field_name, message in scope_problems(collected, specs):
        if field_name != "metric":  # a missing metric is reported per row, with what was measured
            unknown.setdefault(i, []).append(message)
    for i, (check, spec) in enumerate(zip(checks, specs)):
        where = (check.file, check.line) if isinstance(check, LocatedCheck) else (None, None)
        mine = [r for r in rows if r["method"] == spec.method and in_scope(spec, r)]
        if not mine:
            reason = "; ".join(unknown.get(i, [])) or f"no leaderboard row for method {spec.method!r} in scope"
            out.append(CheckResult(_describe(spec) + _scope_text(spec), "-", "-", False, reason, *where))
            continue
        for row in mine:
            if spec.beats is not None:
                out.append(_beats(collected, spec, row))
            if spec.at_least is not None or spec.at_most is not None:
                out.append(_bounds(collected, spec, row))
            out[-1].file, out[-1].line = where
            if spec.beats is not None and (spec.at_least is not None or spec.at_most is not None):
                out[-2].file, out[-2].line = where
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
    others = [r for r in _neighbours(collected.rows, a, spec.beats) if in_scope(spec, r)]
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
            over = f"{c.n} paired test examples" + (f" and {c.seeds[0]} vs {c.seeds[1]} training seeds"
                                                     if c.interval != "examples" else " (one training seed)")
            if c.seed_variance in ("pooled", "other side"):
                over += (" (the one-seed side's seed variance pooled over the grid's multi-seed rows)"
                         if c.seed_variance == "pooled" else " (the one-seed side borrows the other's seed variance)")
            d = delta_digits(c.diff)
            result.numbers += (f"; diff {c.diff:+.{d}f} [{c.low:+.{d}f}, {c.high:+.{d}f}], "
                               f"p={c.p_value:.3g} (one comparison, unadjusted), n={c.n}")
            if c.p_value >= ALPHA:
                reasons.append(f"not significant: p={c.p_value:.3g} >= {ALPHA} over {over}")
            if c.low <= 0 <= c.high:
                reasons.append(f"the 95% interval [{c.low:+.{d}f}, {c.high:+.{d}f}] includes 0")
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
        result.numbers = f"min {low:.4g}, max {high:.4g} over {len(values)} logged steps ({seeds} seed{'' if seeds == 1 else 's'})"
    else:
        mean = _metric_mean(row, spec.metric)
        if mean is None:
            result.reason = _missing_metric(row, spec.metric)
            return result
        low = high = mean
        stat = row["metrics"][spec.metric]
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


# -- golden baseline ---------------------------------------------------------------------------

class ToleranceFlagError(ValueError):
    """A `--tolerance` value that cannot be read: a command-line mistake (exit 2), unlike a
    bad tolerance stored in a baseline file (exit 1)."""


@dataclass(frozen=True)
class Allowance:
    """How far a metric may move in its worse direction: `absolute` units plus `relative`
    times the baseline's magnitude (numpy's atol + rtol * |b|); `spread` instead takes the
    distance from the baseline's mean to the worse end of its 95% interval."""

    absolute: float = 0.0
    relative: float = 0.0
    spread: bool = False

    def amount(self, expected: float) -> float:
        return self.absolute + self.relative * abs(expected)

    def text(self) -> str:
        if self.spread:
            return "spread"
        parts = ([f"{self.absolute:g}"] if self.absolute or not self.relative else [])
        parts += [f"{100 * self.relative:g}%"] if self.relative else []
        return "+".join(parts)

    @classmethod
    def parse(cls, text: str) -> Allowance:
        """`0.5` (absolute), `10%` (relative), `0.01+5%` (both) or `spread`."""
        text = text.strip()
        if text == "spread":
            return cls(spread=True)
        absolute = relative = 0.0
        for part in text.split("+"):
            part = part.strip()
            share = part.endswith("%")
            amount = float(part[:-1] if share else part)  # ValueError is turned into a message by the caller
            if amount < 0 or math.isnan(amount):
                raise ValueError("negative")
            if share:
                relative += amount / 100
            else:
                absolute += amount
        return cls(absolute, relative)


# What each scale calls a real change when nothing else is known: a point on a x100 score;
# a tenth of the value for unbounded quantities (nats, counts), which have no natural unit,
# plus a small absolute part so that a value of exactly 0 (the teacher against itself) still
# tolerates rounding.
SCALE_DEFAULTS = {"percent": Allowance(absolute=1.0), "nats": Allowance(absolute=0.001, relative=0.10),
                  "count": Allowance(absolute=0.5, relative=0.10)}
# The interval of a deterministic row can be empty: never allow less than this share of the scale default.
SPREAD_FLOOR = 0.1


@dataclass
class Tolerance:
    """Per-metric allowances. A metric without one gets the default: with a recorded 95%
    interval, the interval's worse side capped by the metric scale's allowance (a change
    beyond either fails); without one, the scale's allowance."""

    default: Allowance | None = None
    per_metric: dict[str, Allowance] = field(default_factory=dict)

    def allowed(self, metric: str, scale: str, expected: float, low: float | None, high: float | None,
                higher_is_better: bool) -> tuple[float, str]:
        """(how far `metric` may move in its worse direction from `expected`, how that was decided)."""
        chosen = self.per_metric.get(metric, self.default)
        by_scale = SCALE_DEFAULTS.get(scale, SCALE_DEFAULTS["percent"])
        scale_amount = by_scale.amount(expected)
        spread = None
        if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
            spread = max(expected - low if higher_is_better else high - expected, 0.0)
        if chosen is not None and not chosen.spread:
            return chosen.amount(expected), f"--tolerance {chosen.text()}"
        if spread is None:
            if chosen is not None:  # asked for spread, none recorded
                return scale_amount, f"{scale} default {by_scale.text()}; no interval in the baseline"
            return scale_amount, f"{scale} default {by_scale.text()}"
        floor = SPREAD_FLOOR * scale_amount
        if chosen is not None:
            return max(spread, floor), "95% interval"
        if spread <= scale_amount:
            return max(spread, floor), "95% interval"
        return scale_amount, f"{scale} default {by_scale.text()}, narrower than the 95% interval"

    def to_json(self) -> dict[str, str]:
        out = {"default": self.default.text()} if self.default is not None else {}
        return {**out, **{m: a.text() for m, a in self.per_metric.items()}}

    @classmethod
    def parse(cls, values: list[str], stored: dict[str, Any] | None = None) -> Tolerance:
        """`values` are `TOL` (the default) or `METRIC=TOL`, TOL as in `Allowance.parse`;
        they override the tolerance stored in the baseline file, which overrides the
        metric's own default."""
        tolerance = cls()
        for source, items in (("the baseline's tolerance", [f"{k}={v}" for k, v in (stored or {}).items()]),
                              ("--tolerance", values)):
            for value in items:
                metric, _, number = value.rpartition("=")
                try:
                    allowance = Allowance.parse(number)
                except ValueError:
                    error = ToleranceFlagError if source == "--tolerance" else ValueError
                    raise error(f"{source} {value!r}: expected TOL or METRIC=TOL with TOL a number >= 0 "
                                "(absolute), a percentage (relative), both (0.01+5%) or `spread`, "
                                "e.g. 0.5, rougeL=1.5, tf_rkl=10%") from None
                if metric and metric != "default":
                    tolerance.per_metric[metric] = allowance
                else:
                    tolerance.default = allowance
        return tolerance


def unknown_tolerance_metrics(values: list[str], known: list[str]) -> list[str]:
    """A message for each `METRIC=TOL` whose metric is not one of `known` (a typo would
    silently leave that metric on the default tolerance)."""
    from arkd_bench.plugins.registry import unknown_name_message

    problems = []
    for value in values:
        metric = value.rpartition("=")[0]
        if metric and metric != "default" and metric not in known:
            problems.append(f"--tolerance {value!r}: {unknown_name_message('metric', metric, known)}")
    return problems


def _row_id(row: dict) -> tuple:
    return (row["dataset"], row["teacher"], row["student"], row.get("label", row["method"]))


def method_spec(collected: Collected, row: dict) -> dict[str, Any] | None:
    """What the row's method was, as its cells' `cell.json` resolved it: the objective, the
    weighting with its options and the data policy (left out when it is the ground truth),
    without the name; None for rows with no method (teacher, SFT, floors) or no readable cell."""
    from arkd_bench.rundir.store import RunDir, RunDirError

    for cell_id in row["cells"]:
        cell = collected.cell(cell_id)
        if "run" not in cell:
            continue
        try:
            config = RunDir(cell["run"]).read(cell.get("source_cell", cell_id), "cell.json").get("config") or {}
        except (OSError, ValueError, RunDirError):
            continue
        if isinstance(config.get("method"), dict):
            return {k: v for k, v in config["method"].items() if k != "name"}
    return None


def spec_hash(spec: dict[str, Any]) -> str:
    from arkd_bench.recipe.matrix import content_hash

    return content_hash(spec)


def _flat(value: Any, prefix: str = ""):
    """(dotted path, leaf value) pairs of a spec: `weighting.options.weights[0]`."""
    if isinstance(value, dict):
        for k in sorted(value):
            yield from _flat(value[k], f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _flat(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def spec_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """`weighting.options.k: 1 -> -50; ...`, or a note when the baseline kept only the hash."""
    if old is None:
        return "the baseline recorded only the spec's hash"
    a, b = dict(_flat(old)), dict(_flat(new))
    missing = object()
    changes = [f"{k}: {json.dumps(a[k]) if k in a else '(unset)'} -> {json.dumps(b[k]) if k in b else '(unset)'}"
               for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]
    return "; ".join(changes) or "the same settings in another form"


def write_baseline(collected: Collected, path: Path, tolerance: Tolerance | None = None) -> dict[str, Any]:
    """Per-row metric means and intervals of complete rows; refuses when a row has failed or
    unfinished cells, so a broken run never becomes the reference."""
    problems = [r for r in (_incomplete(collected, row) for row in collected.rows) if r]
    if problems:
        raise ValueError("not writing a baseline from an incomplete run: " + "; ".join(problems))
    from arkd_bench.rundir.store import atomic_write_json

    results = collected.results

    def stat(r, key):
        return {m: s[key] for m, s in r["metrics"].items() if key in s}

    def identity(r):
        spec = method_spec(collected, r)
        return {} if spec is None else {"spec": spec, "spec_hash": spec_hash(spec)}

    baseline = {
        "baseline_version": BASELINE_VERSION, "recipe": results["recipe"],
        "metric_info": results.get("metric_info", {}),
        "rows": [{"dataset": r["dataset"], "teacher": r["teacher"], "student": r["student"],
                  "method": r.get("label", r["method"]), **identity(r), "metrics": stat(r, "mean"),
                  "std": stat(r, "std"), "n": stat(r, "n"), "low": stat(r, "low"), "high": stat(r, "high")}
                 for r in collected.rows],
    }
    if tolerance is not None:
        baseline["tolerance"] = tolerance.to_json()
    atomic_write_json(Path(path), baseline)
    return baseline


def _num(value: float) -> str:
    """Enough digits for both x100 scores (12.34) and nats (0.0612)."""
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.4g}"


def compare_baseline(collected: Collected, baseline: dict[str, Any], tolerance: Tolerance) -> list[CheckResult]:
    current = {_row_id(r): r for r in collected.rows}
    info = {**baseline.get("metric_info", {}), **collected.results.get("metric_info", {})}
    out = []
    for golden in baseline.get("rows", []):
        key = (golden["dataset"], golden["teacher"], golden["student"], golden["method"])
        where = f"{golden['dataset']}: {golden['teacher']} -> {golden['student'] or '-'}"
        row = current.get(key)
        changed = _changed_spec(collected, golden, row, where)
        if changed is not None:
            out.append(changed)
            continue
        for metric, expected in sorted(golden["metrics"].items()):
            result = CheckResult(f"{golden['method']} {metric} vs baseline", where, f"baseline {_num(expected)}", False)
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
            scale = info.get(metric, {}).get("scale", "percent")
            tol, source = tolerance.allowed(metric, scale, expected, golden.get("low", {}).get(metric),
                                            golden.get("high", {}).get(metric), hib)
            worse_by = (expected - value) if hib else (value - expected)
            result.numbers = (f"baseline {_num(expected)} -> {_num(value)} ({value - expected:+.4g}; "
                              f"tolerance {tol:.3g} from {source})")
            if worse_by > tol:
                result.reason = (f"{'dropped' if hib else 'rose'} by {worse_by:.4g} > tolerance {tol:.3g} "
                                 f"({'higher' if hib else 'lower'} is better)")
            else:
                result.passed = True
                if -worse_by > tol:
                    result.reason = "improved beyond the tolerance; consider --write-baseline"
    return out


def _changed_spec(collected: Collected, golden: dict[str, Any], row: dict | None, where: str) -> CheckResult | None:
    """A failure when the row's method is not the one the baseline recorded (its spec hash
    differs): its numbers, better or worse, say nothing about a regression of that method."""
    if row is None or "spec_hash" not in golden:
        return None
    spec = method_spec(collected, row)
    if spec is None or spec_hash(spec) == golden["spec_hash"]:
        return None
    return CheckResult(f"{golden['method']} method vs baseline", where,
                       f"spec {golden['spec_hash']} -> {spec_hash(spec)}", False,
                       f"changed: re-baseline ({spec_changes(golden.get('spec'), spec)}); the baseline holds "
                       "another method's numbers, so none is compared: check the change, then --write-baseline")

"""Golden baselines: per-row metric means and 95% intervals written by `write_baseline`, with
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

from arkd_bench.report.checks import CheckResult, incomplete, metric_mean, missing_metric
from arkd_bench.report.rows import Collected, Row

BASELINE_VERSION = 3  # 2 adds each metric's interval (low, high) and scale; 3 each method's spec and its hash


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


def _row_id(row: Row) -> tuple:
    return (row.dataset, row.teacher, row.student, row.label)


def method_spec(collected: Collected, row: Row) -> dict[str, Any] | None:
    """What the row's method was, as its cells' `cell.json` resolved it: the objective, the
    weighting with its options and the data policy (left out when it is the ground truth),
    without the name; None for rows with no method (teacher, SFT, floors) or no readable cell."""
    from arkd_bench.rundir.store import RunDir, RunDirError

    for cell_id in row.cells:
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
    problems = [r for r in (incomplete(collected, row) for row in collected.rows) if r]
    if problems:
        raise ValueError("not writing a baseline from an incomplete run: " + "; ".join(problems))
    from arkd_bench.rundir.store import atomic_write_json

    results = collected.results

    def stat(r, key):
        return {m: s[key] for m, s in r.metrics.items() if key in s}

    def identity(r):
        spec = method_spec(collected, r)
        return {} if spec is None else {"spec": spec, "spec_hash": spec_hash(spec)}

    baseline = {
        "baseline_version": BASELINE_VERSION, "recipe": results["recipe"],
        "metric_info": results.get("metric_info", {}),
        "rows": [{"dataset": r.dataset, "teacher": r.teacher, "student": r.student,
                  "method": r.label, **identity(r), "metrics": stat(r, "mean"),
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


def compare_baseline(collected: Collected, baseline: dict[str, Any], tolerance: Tolerance,
                     file: str | None = None) -> list[CheckResult]:
    """Each metric of each baseline row against the run; `file` (the baseline's path) is
    where CI annotations of the results point."""
    current = {_row_id(r): r for r in collected.rows}
    info = {**baseline.get("metric_info", {}), **collected.results.get("metric_info", {})}
    out = []
    for golden in baseline.get("rows", []):
        key = (golden["dataset"], golden["teacher"], golden["student"], golden["method"])
        where = f"{golden['dataset']}: {golden['teacher']} -> {golden['student'] or '-'}"
        row = current.get(key)
        changed = _changed_spec(collected, golden, row, where, file)
        if changed is not None:
            out.append(changed)
            continue
        for metric, expected in sorted(golden["metrics"].items()):
            result = CheckResult(f"{golden['method']} {metric} vs baseline", where, f"baseline {_num(expected)}", False,
                                 file=file)
            out.append(result)
            if row is None:
                result.reason = f"row {golden['method']!r} is not in the run"
                continue
            reason = incomplete(collected, row)
            if reason:
                result.reason = reason
                continue
            value = metric_mean(row, metric)
            if value is None:
                result.reason = missing_metric(row, metric)
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


def _changed_spec(collected: Collected, golden: dict[str, Any], row: Row | None, where: str,
                  file: str | None) -> CheckResult | None:
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
                       "another method's numbers, so none is compared: check the change, then --write-baseline", file)

"""How a table prints a number: decimals from its 95% interval, intervals clipped to the
metric's range, significance stars and marks, each as a `Cell` in parts that every format
lays out its own way."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_DIGITS = 8
LOW_POWER = "†"  # fewer than 3 training seeds
BORROWED = "‡"  # a one-seed row's seed variance, pooled over its grid's multi-seed rows
MIN_SEEDS = 3


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

"""Which starred cells of a printed comparison table survive a multiple-comparison correction?

Reads a markdown table from benchmarks/RESULTS.md whose cells read `diff [low, high]` with the
report's stars (** p < 0.01, * p < 0.05, none: the interval contains 0), printed to a fixed
number of decimals, and bounds each cell's two-sided p-value from what is printed:

- the report's two-level interval is diff +- t(df) * SE (Student's t, Welch-Satterthwaite df
  between `--df-min` and `--df-max`: with 3 paired seeds and 200 test examples, 2 and 201), so
  p = 2 * t.sf(t_975(df) * |diff| / half-width, df). This is how the interval was computed
  when the alpha-sweep tables in RESULTS.md were printed (arkd_bench/evaluate/stats.py at
  commit e446c85); tables rendered after commit ab4577f give each variance part its own t
  quantile, and this model of the interval has to be revisited before reading them;
- the unrounded diff, low and high lie within half a unit of the last printed digit, and diff
  is the interval's midpoint;
- the star says on which side of 0.01 and 0.05 p lies.

The smallest and largest p consistent with all three go into Holm's step-down procedure and
Bonferroni over the table's cells at family-wise level 0.05. Both are monotone in the p-values:
a cell rejected with every p at its largest value survives whatever the unrounded numbers
were; a cell not rejected with every p at its smallest value does not survive.

    python benchmarks/multiple_comparisons.py --table "Against the best fixed mix" \\
        --out benchmarks/results/alpha_sweep_holm.json
    python benchmarks/multiple_comparisons.py --smoke    # a two-row table embedded here, for the tests
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

LEVEL = 0.05
CELL = re.compile(r"^\s*([+-]?\d+\.(\d+))\s*\[\s*([+-]?\d+\.\d+)\s*,\s*([+-]?\d+\.\d+)\s*\](\**)\s*$")
SMOKE_TABLE = """Smoke table:

| method | a | b |
|---|---|---|
| x | +0.11 [+0.10, +0.12]** | +0.02 [+0.01, +0.03]* |
| y | -0.61 [-1.47, +0.26] | +0.93 [+0.08, +1.77]* |
"""


def read_table(text: str, heading: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The first markdown table after the first line that starts with `heading`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    header, body = rows[0], rows[2:]
    return header[1:], [(r[0], r[1:]) for r in body]


def p_range(diff: str, decimals: int, low: str, high: str, stars: str, df_min: float, df_max: float,
            grid: int = 1001) -> tuple[float, float]:
    """(smallest, largest) two-sided p consistent with the printed cell."""
    from scipy import stats

    half_unit = 0.5 * 10.0**-decimals
    d, lo, hi = float(diff), float(low), float(high)
    L = np.linspace(lo - half_unit, lo + half_unit, grid)[:, None]
    H = np.linspace(hi - half_unit, hi + half_unit, grid)[None, :]
    ok = (np.abs((L + H) / 2 - d) <= half_unit) & (H > L)
    if stars:  # a starred interval excludes 0
        ok &= (L > 0) | (H < 0)
    ratio = np.abs((L + H) / 2) / ((H - L) / 2)
    q = ratio[ok]
    # p falls as |diff| / half-width grows, at every df: the extremes of q give those of p
    dfs = np.geomspace(df_min, df_max, 400)
    crit = stats.t.ppf(0.975, dfs)
    p_min = float((2 * stats.t.sf(crit * q.max(), dfs)).min())
    p_max = float((2 * stats.t.sf(crit * q.min(), dfs)).max())
    # what the star says about the report's own p-value
    if stars == "**":
        p_max = min(p_max, 0.01)
    elif stars == "*":
        p_min, p_max = max(p_min, 0.01), min(p_max, 0.05)
    else:
        p_min = max(p_min, 0.05) if (float(low) > 0 or float(high) < 0) else p_min
    return p_min, p_max


def holm(p: list[float], level: float = LEVEL) -> list[bool]:
    order = np.argsort(p, kind="stable")
    rejected = [False] * len(p)
    m = len(p)
    for rank, i in enumerate(order):
        if p[i] > level / (m - rank):
            break
        rejected[i] = True
    return rejected


def analyse(text: str, heading: str, df_min: float, df_max: float) -> dict:
    columns, rows = read_table(text, heading)
    cells = []
    for method, values in rows:
        for column, value in zip(columns, values):
            m = CELL.match(value)
            if not m:
                raise ValueError(f"cannot read {method} / {column}: {value!r}")
            diff, decimals, low, high, stars = m.group(1), len(m.group(2)), m.group(3), m.group(4), m.group(5)
            p_min, p_max = p_range(diff, decimals, low, high, stars, df_min, df_max)
            cells.append({"method": method, "column": column, "printed": value, "stars": stars,
                          "p_min": p_min, "p_max": p_max})
    m = len(cells)
    surely = holm([c["p_max"] for c in cells])
    possibly = holm([c["p_min"] for c in cells])
    for c, yes, maybe in zip(cells, surely, possibly):
        c["holm"] = "survives" if yes else ("does not survive" if not maybe else "undetermined")
        c["bonferroni"] = ("survives" if c["p_max"] <= LEVEL / m else
                           "does not survive" if c["p_min"] > LEVEL / m else "undetermined")
    return {"heading": heading, "comparisons": m, "level": LEVEL, "df_range": [df_min, df_max], "cells": cells}


def markdown(result: dict) -> str:
    m = result["comparisons"]
    lines = [f"{result['heading']!r}: {m} comparisons, family-wise level {result['level']}, df in "
             f"{result['df_range']}; Bonferroni threshold {result['level'] / m:.4f}.", "",
             "| method | comparison | printed | p (smallest / largest consistent with the print) | Holm | Bonferroni |",
             "|---|---|---|---|---|---|"]
    for c in result["cells"]:
        lines.append(f"| {c['method']} | {c['column']} | {c['printed']} | {c['p_min']:.2g} / {c['p_max']:.3g} | "
                     f"{c['holm']} | {c['bonferroni']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(Path(__file__).parent / "RESULTS.md"))
    parser.add_argument("--table", default="Against the best fixed mix",
                        help="start of the line above the table (its first table is read)")
    parser.add_argument("--df-min", type=float, default=2.0, help="smallest t df: (seeds - 1) with paired seeds")
    parser.add_argument("--df-max", type=float, default=201.0, help="largest t df: the parts' df summed")
    parser.add_argument("--out", default=None, help="JSON output (default: print only)")
    parser.add_argument("--smoke", action="store_true", help="the embedded two-row table (for the tests)")
    args = parser.parse_args()
    text = SMOKE_TABLE if args.smoke else Path(args.results).read_text(encoding="utf-8")
    result = analyse(text, "Smoke table" if args.smoke else args.table, args.df_min, args.df_max)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(markdown(result))


if __name__ == "__main__":
    main()

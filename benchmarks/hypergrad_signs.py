"""How stable is the sign of hypergrad's hypergradient over training? Read from the cells'
train_log.jsonl (every step logged: `strategy/hypergrad`, `strategy/hypergrad_avg`,
`strategy/meta_step`, `strategy/alpha`).

    python benchmarks/hypergrad_signs.py benchmarks/results/runs/alpha-sweep
    python benchmarks/hypergrad_signs.py --smoke   # a tiny 8-step grid run here, in a temp folder

For each hypergrad cell and each quarter of its steps:
- `up`: the share of steps whose hypergradient h = dc_after/d alpha is negative (a step with more
  FKL would have lowered the probe criterion, so alpha is pushed up);
- `lag1`: the share of consecutive steps whose h has the same sign (0.5 for a coin, 1 for a
  constant sign);
- `avg_sign`: the share of steps whose h agrees in sign with the moving average alpha follows;
- `t`: mean(h) / (sd(h) / sqrt(n)), the evidence that the quarter's mean slope is not zero;
- `drift`: alpha's net change over the quarter, and `persistence`: |drift| over the largest move
  the meta steps could have made (n * beta, with `normalize: rms`), 1 when every step pushed the
  same way at full size.

--smoke runs arkd_bench.testing's tiny grid (1-layer GPT-2s, 8 steps) with hypergrad in a
temporary folder, prints its table and a JSON line of the rows, and deletes the folder.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

from alpha_trajectories import smoke_run  # the same tiny grid, other methods

QUARTERS = 4
SMOKE_METHODS = [{"name": "hypergrad", "objective": ["fkl", "rkl"], "weighting": {"name": "hypergrad"}}]


def quarter_stats(log: list[dict], beta: float) -> list[dict]:
    """The sign statistics of each quarter of one cell's logged steps."""
    steps = [r for r in log if "strategy/hypergrad" in r and "selected" not in r]
    total = len(steps)
    out = []
    for q in range(QUARTERS):
        part = steps[q * total // QUARTERS:(q + 1) * total // QUARTERS]
        if len(part) < 2:
            continue
        h = [r["strategy/hypergrad"] for r in part]
        n, mean = len(h), sum(h) / len(h)
        sd = math.sqrt(sum((x - mean) ** 2 for x in h) / (n - 1))
        # alpha logged at a step is the weight that step used; the meta step after it moves it on
        drift = part[-1]["strategy/alpha"] + part[-1]["strategy/meta_step"] - part[0]["strategy/alpha"]
        out.append({
            "quarter": q + 1, "steps": n,
            "up": sum(x < 0 for x in h) / n,
            "lag1": sum((a < 0) == (b < 0) for a, b in zip(h, h[1:])) / (n - 1),
            "avg_sign": sum((r["strategy/hypergrad"] < 0) == (r["strategy/hypergrad_avg"] < 0) for r in part) / n,
            "t": mean / (sd / math.sqrt(n)) if sd > 0 else 0.0,
            "drift": drift,
            "persistence": abs(drift) / (n * beta),
        })
    return out


def cells(run: Path) -> list[dict]:
    """[{method, seed, beta, quarters}] for every finished hypergrad cell of `run`."""
    found = []
    for folder in sorted((run / "cells").iterdir()):
        cell = json.loads((folder / "cell.json").read_text())
        status = json.loads((folder / "status.json").read_text())
        weighting = (cell.get("config") or {}).get("method", {}).get("weighting", {})
        if status.get("status") != "done" or weighting.get("name") != "hypergrad":
            continue
        log = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
        beta = float((weighting.get("options") or {}).get("beta", 0.01))
        found.append({"method": cell["method"], "seed": cell["seed"], "beta": beta,
                      "quarters": quarter_stats(log, beta)})
    return sorted(found, key=lambda c: (c["method"], c["seed"]))


def print_table(found: list[dict]) -> None:
    print("| method | seed | quarter | steps | up | lag1 | avg_sign | t | drift | persistence |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in found:
        for q in c["quarters"]:
            print(f"| {c['method']} | {c['seed']} | {q['quarter']} | {q['steps']} | {q['up']:.2f} | {q['lag1']:.2f} "
                  f"| {q['avg_sign']:.2f} | {q['t']:+.2f} | {q['drift']:+.3f} | {q['persistence']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rundir", nargs="?")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--smoke", action="store_true", help="run a tiny 8-step hypergrad grid in a temp folder")
    args = parser.parse_args()
    if args.smoke == (args.rundir is not None):
        parser.error("give a run folder, or --smoke")
    if args.smoke:
        import torch

        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as tmp:
            found = cells(smoke_run(Path(tmp), SMOKE_METHODS))
    else:
        found = cells(Path(args.rundir))
    print_table(found)
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=1) + "\n")
    print(json.dumps({"smoke": args.smoke, "cells": found}))


if __name__ == "__main__":
    main()

"""Where each adaptive method's FKL weight went in a run: mean alpha per seed over windows
of training steps, read from the cells' train_log.jsonl.

    python benchmarks/alpha_trajectories.py runs/alpha-sweep
    python benchmarks/alpha_trajectories.py --smoke   # a tiny 8-step grid run here, in a temp folder

For `arkd` the policy's mean alpha (`strategy/alpha_expected`) is reported beside the
sampled one; for the others the batch-mean weight of the first term (`weight/<label>`).
Methods whose weights never change (fixed mixes) are left out.

--smoke runs arkd_bench.testing's tiny grid (1-layer GPT-2s, 8 steps) with a fixed 0.5/0.5 mix,
AKL and ARKD in a temporary folder, prints its table and a JSON line of the rows, and deletes
the folder.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

WINDOWS = ((0, 50), (50, 100), (100, 150), (150, 200))
SMOKE_METHODS = [
    {"name": "mix", "objective": ["fkl", "rkl"], "weighting": {"name": "fixed", "options": {"weights": [0.5, 0.5]}}},
    {"name": "akl", "objective": ["fkl", "rkl"], "weighting": {"name": "greedy"}},
    {"name": "arkd", "objective": ["fkl", "rkl"], "weighting": {"name": "arkd"}},
]


def series(log: list[dict], key: str) -> dict[int, float]:
    return {r["step"]: r[key] for r in log if key in r and "selected" not in r}


def window_means(values: dict[int, float], total: int) -> list[float | None]:
    out = []
    for lo, hi in WINDOWS:
        lo, hi = lo * total // 200, hi * total // 200
        picked = [v for s, v in values.items() if lo <= s < hi]
        out.append(sum(picked) / len(picked) if picked else None)
    return out


def trajectories(run: Path) -> dict[tuple[str, str], list[tuple[int, list[float | None]]]]:
    """(method, logged quantity) -> [(seed, window means)] for every finished cell of `run`."""
    rows = defaultdict(list)
    for folder in sorted((run / "cells").iterdir()):
        cell = json.loads((folder / "cell.json").read_text())
        status = json.loads((folder / "status.json").read_text())
        log_path = folder / "train_log.jsonl"
        if status.get("status") != "done" or not log_path.is_file():
            continue
        log = [json.loads(line) for line in log_path.read_text().splitlines()]
        keys = ["strategy/alpha_expected", "strategy/alpha"] if "strategy/alpha_expected" in log[-1] else []
        keys += [k for k in log[0] if k.startswith("weight/")][:1]
        total = max(r["step"] for r in log if "step" in r) + 1
        for key in keys:
            values = series(log, key)
            if len(set(values.values())) > 1:  # a fixed mix has nothing to show
                rows[(cell["method"], key)].append((cell["seed"], window_means(values, total)))
    return rows


def print_table(rows) -> None:
    header = "| method | quantity | seed | " + " | ".join(f"steps {lo}-{hi - 1}" for lo, hi in WINDOWS) + " |"
    print(header)
    print("|---|---|---|" + "---|" * len(WINDOWS))
    for (method, key), per_seed in sorted(rows.items()):
        for seed, means in sorted(per_seed):
            cells = " | ".join("-" if m is None else f"{m:.3f}" for m in means)
            print(f"| {method} | {key} | {seed} | {cells} |")


def smoke_run(folder: Path, methods=SMOKE_METHODS) -> Path:
    """A tiny 8-step grid of `methods`, every step logged, run in `folder`."""
    from arkd_bench.testing import run_tiny

    tiny = run_tiny(folder, methods=methods, train={"steps": 8, "batch_size": 4, "max_length": 48,
                                                          "log_every": 1},
                    eval={"metrics": ["tf_fkl"], "generation": {"max_new_tokens": 2, "batch_size": 8},
                          "baselines": []})
    return tiny.out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rundir", nargs="?")
    parser.add_argument("--smoke", action="store_true",
                        help="run a tiny 8-step grid (fixed mix, AKL, ARKD) in a temp folder and read it")
    args = parser.parse_args()
    if args.smoke == (args.rundir is not None):
        parser.error("give a run folder, or --smoke")
    if not args.smoke:
        print_table(trajectories(Path(args.rundir)))
        return
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = trajectories(smoke_run(Path(tmp)))
    print_table(rows)
    print(json.dumps({"smoke": True, "windows": [list(w) for w in WINDOWS], "rows": [
        {"method": method, "quantity": key, "seed": seed, "means": means}
        for (method, key), per_seed in sorted(rows.items()) for seed, means in per_seed]}))


if __name__ == "__main__":
    main()

"""Numbers behind benchmarks/RESULTS.md "Weighting strategies" (not a test; not collected).

    python benchmarks/weighting.py [--seeds 10] [--threads 1]
    python benchmarks/weighting.py --smoke   # 2 seeds, 40 bandit steps, 5 overhead steps: checks that it runs

1. The ARKD bandit: r(alpha) = -(alpha - 0.3)^2 + N(0, 0.005^2), constant StepFeatures,
   800 steps, lr 3e-3, other options default; the policy's mean alpha averaged over the last
   200 steps, over seeds (one seed drives both the policy and the reward noise).
2. Strategy overhead per optimizer step (weights() + observe()) on a 8 x 512 token batch.

--smoke runs both on 2 seeds, 40 bandit steps (mean over the last 10; bernoulli 30 steps, last
10) and 5 overhead steps, and ends with a JSON line of the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

# The bandit fixtures are shared with the unit tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "weighting"))
from conftest import features_from, probe_feedback, random_distributions  # noqa: E402

from arkd_bench.weighting import ArkdWeighting, GreedyWeighting  # noqa: E402

TARGET = 0.3


def bandit(seed: int, steps: int = 800, noise: float = 0.005, **options) -> np.ndarray:
    f = features_from(*random_distributions((2, 4), seed=0))
    s = ArkdWeighting(seed=seed, lr=3e-3, **options)
    rng = np.random.default_rng(seed)
    expected = []
    for k in range(steps):
        alpha = float(s.weights(f)[0])
        s.observe(probe_feedback(f, -((alpha - TARGET) ** 2) + noise * rng.standard_normal(), step=k))
        expected.append(s.log_scalars()["alpha_expected"])
    return np.array(expected)


def convergence_table(seeds: int, steps: int = 800, tail: int = 200, bernoulli_steps: int = 300,
                      bernoulli_tail: int = 20) -> dict:
    print("| action | baseline | seed 0 | mean | min | max | max abs error |")
    print("|---|---|---|---|---|---|---|")
    out = {}
    for action in ("beta", "logit_normal"):
        for baseline in ("ema", "value"):
            final = np.array([bandit(s, steps=steps, action=action, baseline=baseline)[-tail:].mean()
                              for s in range(seeds)])
            print(
                f"| {action} | {baseline} | {final[0]:.3f} | {final.mean():.3f} | {final.min():.3f} "
                f"| {final.max():.3f} | {np.abs(final - TARGET).max():.3f} |"
            )
            out[f"{action}/{baseline}"] = final.tolist()
    p_one = np.array([bandit(s, steps=bernoulli_steps, action="bernoulli")[-bernoulli_tail:].mean()
                      for s in range(seeds)])
    print(
        f"\nbernoulli, {bernoulli_steps} steps: P(alpha=1) from 0.50 to {p_one.mean():.3f} "
        f"(max {p_one.max():.3f}) over {seeds} seeds"
    )
    out["bernoulli"] = p_one.tolist()
    return out


def overhead_table(steps: int = 200) -> dict:
    f = features_from(*random_distributions((8, 512), vocab=16, seed=0))
    print("| strategy | per step (ms) |")
    print("|---|---|")
    cases = {
        "greedy (token)": lambda: GreedyWeighting(),
        "arkd batch, beta, ema": lambda: ArkdWeighting(),
        "arkd batch, beta, value": lambda: ArkdWeighting(baseline="value"),
        "arkd token, beta, ema": lambda: ArkdWeighting(granularity="token"),
        "arkd token, logit_normal, value": lambda: ArkdWeighting(
            granularity="token", action="logit_normal", baseline="value"
        ),
    }
    out = {}
    for name, make in cases.items():
        s = make()
        start = time.perf_counter()
        for k in range(steps):
            s.weights(f)
            s.observe(probe_feedback(f, 0.01 * np.sin(k), step=k))
        out[name] = 1000 * (time.perf_counter() - start) / steps
        print(f"| {name} | {out[name]:.2f} |")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--smoke", action="store_true",
                        help="2 seeds, 40 bandit steps, 5 overhead steps; ends with a JSON line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        final = convergence_table(2, steps=40, tail=10, bernoulli_steps=30, bernoulli_tail=10)
        print()
        ms = overhead_table(steps=5)
        print(json.dumps({"smoke": True, "final_alpha": final, "overhead_ms": ms}))
    else:
        convergence_table(args.seeds)
        print()
        overhead_table()

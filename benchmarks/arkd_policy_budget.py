"""How far can ARKD's policy move alpha in a run's budget when the reward is perfect?

The real `ArkdWeighting` (every option at its default except `lr` and `seed`) is driven
step by step as the training loop drives it: `weights(features)` samples alpha, then
`observe(feedback)` hands it a noiseless probe reward r = alpha (the probe criterion falls by
exactly alpha), so the best action is always alpha = 1 and every reward carries only signal.
With the defaults the policy is updated every 4 rewarded steps: a 200-step run is 50 updates.

Reported: the policy's mean alpha (`alpha_expected`, 0.5 at the start) averaged over steps
150-199 (the last quarter, as in the alpha-sweep verdict), per seed, for each learning rate;
and, from longer runs at the default lr, the first step at which that mean reaches 0.75 and 0.9.
Two kinds of state: `constant` (one fake_features batch every step) and `varying` (a fresh
fake_features batch every step, so the normalised features move as in a run).

    python benchmarks/arkd_policy_budget.py --out benchmarks/results/arkd_policy_budget.json
    python benchmarks/arkd_policy_budget.py --smoke      # a few steps, for the tests
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

LRS = (1e-3, 3e-3, 1e-2, 3e-2)
DEFAULT_LR = 1e-3  # ArkdOptions.lr
THRESHOLDS = (0.75, 0.9)


def trajectory(lr: float, seed: int, features: list, *, steps: int) -> np.ndarray:
    """alpha_expected at every step of one run with reward r = alpha (noiseless)."""
    from arkd_bench.testing import fake_feedback
    from arkd_bench.weighting import ArkdWeighting

    strategy = ArkdWeighting(seed=seed, lr=lr)
    after = {"fkl": 0.0, "rkl": 0.0}
    expected = np.empty(steps)
    for k in range(steps):
        f = features[k % len(features)]
        alpha = float(strategy.weights(f)[0])
        expected[k] = strategy.log_scalars()["alpha_expected"]
        strategy.observe(fake_feedback(f, step=k, total_steps=steps,
                                       probe_before={"fkl": alpha, "rkl": 0.0}, probe_after=after))
    return expected


def make_features(kind: str, steps: int) -> list:
    from arkd_bench.testing import fake_features

    if kind == "constant":
        return [fake_features(seed=0, step=0, total_steps=steps)]
    return [fake_features(seed=k, step=k, total_steps=steps) for k in range(steps)]


def first_reaching(expected: np.ndarray, level: float) -> int | None:
    hits = np.nonzero(expected >= level)[0]
    return int(hits[0]) if hits.size else None


def run(seeds: int, steps: int, window: tuple[int, int], lrs, states, long_steps: int) -> dict:
    started = time.time()
    out: dict = {"steps": steps, "window": list(window), "seeds": seeds, "lrs": list(lrs),
                 "reward": "r = alpha (probe_before fkl = alpha, probe_after 0), noiseless",
                 "updates": steps // 4, "states": {}}
    for kind in states:
        features = make_features(kind, max(steps, long_steps))
        rows = {}
        for lr in lrs:
            means = [float(trajectory(lr, s, features, steps=steps)[window[0]:window[1] + 1].mean())
                     for s in range(seeds)]
            rows[f"{lr:g}"] = {"per_seed": means, "min": min(means), "max": max(means),
                               "mean": float(np.mean(means))}
        long = {}
        if long_steps:
            for s in range(seeds):
                e = trajectory(DEFAULT_LR, s, features, steps=long_steps)
                long[str(s)] = {f"{t:g}": first_reaching(e, t) for t in THRESHOLDS}
        out["states"][kind] = {"window_mean": rows, "default_lr_long": {"steps": long_steps, "first_step": long}}
    out["seconds"] = round(time.time() - started, 1)
    out["machine"] = f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    return out


def markdown(result: dict) -> str:
    lo, hi = result["window"]
    lines = [f"Noiseless reward r = alpha, {result['steps']} steps ({result['updates']} policy updates of 4), "
             f"{result['seeds']} seeds; policy mean alpha averaged over steps {lo}-{hi}:", "",
             "| state | lr | per seed | min | max |", "|---|---|---|---|---|"]
    for kind, block in result["states"].items():
        for lr, row in block["window_mean"].items():
            per_seed = " / ".join(f"{v:.3f}" for v in row["per_seed"])
            lines.append(f"| {kind} | {lr} | {per_seed} | {row['min']:.3f} | {row['max']:.3f} |")
    for kind, block in result["states"].items():
        long = block["default_lr_long"]
        if not long["first_step"]:
            continue
        lines += ["", f"{kind} state, lr {DEFAULT_LR:g}, {long['steps']} steps: first step whose policy mean "
                      f"reaches " + " / ".join(f"{t:g}" for t in THRESHOLDS) + ", per seed:"]
        for seed, hit in long["first_step"].items():
            lines.append(f"- seed {seed}: " + " / ".join("never" if v is None else str(v) for v in hit.values()))
    lines.append(f"\n({result['seconds']} s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--long-steps", type=int, default=2000,
                        help="length of the default-lr runs that time the thresholds (0: skip)")
    parser.add_argument("--out", default=None, help="JSON file for the result (default: print only)")
    parser.add_argument("--smoke", action="store_true", help="2 seeds, 24 steps, 2 lrs: checks that it runs")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # the policy's tensors are tiny
    if args.smoke:
        result = run(2, 24, (16, 23), LRS[:2], ("constant", "varying"), long_steps=32)
    else:
        steps = args.steps
        result = run(args.seeds, steps, (steps * 3 // 4, steps - 1), LRS, ("constant", "varying"),
                     args.long_steps)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(markdown(result))


if __name__ == "__main__":
    main()

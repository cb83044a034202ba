"""The ARKD and alpha-sweep benchmark scripts run (their --smoke modes), and the signal
study's simulated advantage is the one ArkdWeighting computes."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _smoke(script: str, out: Path) -> dict:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def test_arkd_policy_budget_smoke(tmp_path):
    result = _smoke("arkd_policy_budget.py", tmp_path / "budget.json")
    assert set(result["states"]) == {"constant", "varying"}
    for block in result["states"].values():
        for row in block["window_mean"].values():
            assert all(0.0 < v < 1.0 for v in row["per_seed"])
        assert block["default_lr_long"]["first_step"]


def test_arkd_signal_smoke(tmp_path):
    result = _smoke("arkd_signal.py", tmp_path / "baselines.json")
    table = result["tables"]["0"]
    assert set(table["snr"]["probe"]["simulated"]) == {"global", "checkpoint", "arkd ema", "arkd ema+norm"}
    assert table["snr"]["probe"]["exact"]["global"]["snr_1"] == pytest.approx(0.1732, abs=1e-4)


def _signal_module():
    spec = importlib.util.spec_from_file_location("arkd_signal", BENCHMARKS / "arkd_signal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("reward_norm", [True, False])
def test_simulated_advantage_is_arkds(reward_norm):
    from arkd_bench.weighting import ArkdWeighting

    rewards = np.random.default_rng(0).normal(0.01, 0.005, size=(1, 40))
    rewards[0, 20:] += 0.02  # a jump, as between checkpoints
    strategy = ArkdWeighting(reward_norm=reward_norm)
    expected = [strategy._advantage(float(r)) for r in rewards[0]]
    simulated = _signal_module().arkd_advantages(rewards, strategy.options.baseline_decay, normalise=reward_norm)
    np.testing.assert_allclose(simulated[0], expected, rtol=1e-9, atol=1e-12)


def test_multiple_comparisons_smoke(tmp_path):
    result = _smoke("multiple_comparisons.py", tmp_path / "holm.json")
    verdicts = {(c["method"], c["column"]): c["holm"] for c in result["cells"]}
    assert verdicts[("x", "a")] == "survives"  # ** with a half-width a tenth of the difference
    assert verdicts[("y", "a")] == "does not survive"  # the interval contains 0


def test_first_order_reward_smoke(tmp_path):
    """The first-order reward benchmark on the tiny grid (8 steps): every summary is there and
    finite, and its costs are measured; its numbers mean nothing at this size."""
    result = _smoke("first_order_reward.py", tmp_path / "first_order.json")
    assert result["smoke"] is True and result["horizons"] == [1, 2]
    block = result["seeds"][0]
    summary = block["agreement"]["summary"]
    for what in ("paired", "local_slope"):
        for variant in ("first_order", "held_preconditioner"):
            c = summary[what][variant]
            assert -1.0 <= c["pearson"] <= 1.0 and 0.0 <= c["sign_agreement"] <= 1.0
    assert summary["paired"]["first_order"]["n"] == 2 * 2 * 4  # checkpoints x batches x alphas != 0.5
    assert all(s > 0 for s in summary["median_seconds"].values())
    horizon = block["horizon"]["summary"]
    for kind in ("probe", "paired", "first_order"):
        assert horizon[kind]["1"]["var_ratio"] == pytest.approx(1.0)
        assert np.isfinite(horizon[kind]["2"]["var_ratio"]) and horizon[kind]["2"]["windows"] == 4
    assert len(block["horizon"]["records"]) == 8

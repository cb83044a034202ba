"""Weighting variants through a real tiny grid (tests/fixtures/tiny.yaml): the ARKD variant of
the authors' released code (Bernoulli alpha, Rouge-L reward), ARKD with one alpha per token,
and the schedule strategy. One grid runs all three methods; each test reads its cell."""
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from arkd_bench.cli import app

FIXTURES = Path(__file__).parents[1] / "fixtures"
STEPS = 6
SCHEDULE = {"start": [0.9, 0.1], "end": [0.2, 0.8]}

METHODS = [
    {"name": "arkd-authors", "objective": ["fkl", "rkl"],
     "weighting": {"name": "arkd", "options": {"action": "bernoulli", "reward": "rouge", "reward_every": 1,
                                               "update_every": 1}}},
    {"name": "arkd-token", "objective": ["fkl", "rkl"],
     "weighting": {"name": "arkd", "options": {"granularity": "token", "update_every": 1}}},
    {"name": "schedule-linear", "objective": ["fkl", "rkl"],
     "weighting": {"name": "schedule", "options": {**SCHEDULE, "shape": "linear"}}},
    {"name": "schedule-step", "objective": ["fkl", "rkl"],
     "weighting": {"name": "schedule", "options": {**SCHEDULE, "shape": "step", "step_at": 0.5}}},
]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """(cells by method, out folder) of one tiny run with every method above, logged each step."""
    folder = tmp_path_factory.mktemp("variants")
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    recipe["checks"] = []
    recipe["methods"] = METHODS
    recipe["train"] = {**recipe["train"], "steps": STEPS, "log_every": 1}
    recipe["eval"] = {**recipe["eval"], "baselines": []}
    shutil.copy(FIXTURES / "tiny_pairs.jsonl", folder)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = folder / "out"
    result = CliRunner().invoke(app, ["run", str(folder / "recipe.yaml"), "--out", str(out),
                                      "--cache-dir", str(folder / "cache")])
    results = json.loads((out / "results.json").read_text())
    return {c["method"]: c for c in results["cells"]}, out, result.output


def done_log(grid, method: str) -> list[dict]:
    cells, out, output = grid
    cell = cells[method]
    assert cell["status"] == "done", f"{method}: {cell.get('error')}\n{output}"
    lines = (out / "cells" / cell["id"] / "train_log.jsonl").read_text().splitlines()
    log = [json.loads(line) for line in lines]
    assert [r["step"] for r in log] == list(range(STEPS))
    return log


def mean_alpha_before_and_after_training(grid, method: str) -> tuple[float, float]:
    """The policy's mean alpha (bernoulli: P(alpha = 1)) on the same features, with its
    initial weights and with the weights saved at the end of the run; everything else
    (feature normalisation, step counters) is the saved state in both."""
    import torch

    from arkd_bench import get_weighting
    from arkd_bench.testing import fake_features

    cells, out, _ = grid
    options = next(m for m in METHODS if m["name"] == method)["weighting"]["options"]
    state = torch.load(out / "cells" / cells[method]["id"] / "strategy.pt", weights_only=True)
    initial = get_weighting("arkd", **options).state_dict()["policy"]

    def mean_alpha(policy) -> float:
        strategy = get_weighting("arkd", **options)
        strategy.load_state_dict({**state, "policy": policy})
        strategy.weights(fake_features(seed=3, step=STEPS, total_steps=STEPS + 1))
        return strategy.log_scalars()["alpha_expected"]

    return mean_alpha(initial), mean_alpha(state["policy"])


def test_authors_variant_bernoulli_alpha_and_rouge_reward(grid):
    log = done_log(grid, "arkd-authors")
    for r in log:
        assert r["strategy/alpha"] in (0.0, 1.0), r
        assert r["weight/fkl"] in (0.0, 1.0) and r["weight/fkl"] + r["weight/rkl"] == 1.0, r
        assert 0.0 <= r["strategy/alpha_expected"] <= 1.0  # P(alpha = 1)
    assert all("strategy/rouge" in r for r in log)  # measured every step (reward_every: 1)
    # the first measurement is only the reference; from the second on there is a reward
    rewarded = [r for r in log if "strategy/reward" in r]
    assert rewarded and rewarded[0]["step"] == 1
    for r in rewarded:
        assert r["strategy/reward"] == pytest.approx(r["strategy/rouge"] - log[r["step"] - 1]["strategy/rouge"])
    assert any("strategy/loss" in r for r in log)  # the policy was updated (update_every: 1)
    before, after = mean_alpha_before_and_after_training(grid, "arkd-authors")
    assert abs(after - before) > 1e-5, (before, after)  # and the updates moved P(alpha = 1) (same weights: equal)


def test_token_granularity_gives_per_token_weights_strictly_inside_0_1(grid):
    log = done_log(grid, "arkd-token")
    for r in log:
        w = r["weight/fkl"]  # the mean over the batch's tokens of the per-token alpha
        assert 0.0 < w < 1.0, r
        assert w + r["weight/rkl"] == pytest.approx(1.0)
        assert 0.0 < r["strategy/alpha_expected"] < 1.0
        # a mean of ~100 per-token draws stays near the policy's mean alpha; one per-batch draw
        # (sd about 0.25 at the initial policy) would not, step after step
        assert abs(w - r["strategy/alpha_expected"]) < 0.15, r
    assert any("strategy/reward" in r for r in log)  # probe reward, as at batch granularity
    before, after = mean_alpha_before_and_after_training(grid, "arkd-token")
    assert abs(after - before) > 1e-5, (before, after)  # the updates (update_every: 1) moved the policy


def test_schedule_moves_the_fkl_weight_from_start_to_end(grid):
    (start_fkl, start_rkl), (end_fkl, end_rkl) = SCHEDULE["start"], SCHEDULE["end"]
    linear = done_log(grid, "schedule-linear")
    fkl = [r["weight/fkl"] for r in linear]
    assert fkl[0] == pytest.approx(start_fkl) and linear[0]["weight/rkl"] == pytest.approx(start_rkl)
    assert all(b < a for a, b in zip(fkl, fkl[1:]))  # strictly towards the end value
    for r in linear:  # on the line start -> end, at the logged progress (step / (steps - 1))
        p = r["feature/progress"]
        assert p == pytest.approx(r["step"] / (STEPS - 1))
        assert r["weight/fkl"] == pytest.approx(start_fkl + p * (end_fkl - start_fkl))
        assert r["weight/rkl"] == pytest.approx(start_rkl + p * (end_rkl - start_rkl))
    # the last step is at progress 1: both shapes end exactly on `end`
    assert linear[-1]["weight/fkl"] == pytest.approx(end_fkl) and linear[-1]["weight/rkl"] == pytest.approx(end_rkl)
    step = done_log(grid, "schedule-step")
    assert step[0]["weight/fkl"] == pytest.approx(start_fkl)
    assert step[-1]["weight/fkl"] == pytest.approx(end_fkl) and step[-1]["weight/rkl"] == pytest.approx(end_rkl)
    assert {round(r["weight/fkl"], 6) for r in step} == {start_fkl, end_fkl}

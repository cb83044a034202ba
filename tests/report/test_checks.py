"""`arkd-bench check`: recipe checks, training-log bounds, failed cells, golden baselines."""
import json

import pytest
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.recipe.schema import CheckSpec
from arkd_bench.report.baseline import Tolerance, compare_baseline
from arkd_bench.report.checks import run_checks
from arkd_bench.report.rows import Collected

runner = CliRunner()


# -- check logic on hand-built results --------------------------------------------------------

def hand_collected(a_scores, b_scores, lower=False, scale="percent"):
    """Rows a and b (one cell each) with per-example scores of metric m."""
    rows, cells, scores = [], [], {}
    for i, (name, values) in enumerate((("a", a_scores), ("b", b_scores))):
        cid = f"{i:012x}"
        mean = sum(values) / len(values)
        rows.append({"dataset": "d", "teacher": "t", "student": "s", "method": name, "label": name,
                     "kind": "distill", "failed": 0, "pending": 0, "cells": [cid], "recipes": ["r"],
                     "metrics": {"m": {"mean": mean, "std": 0.0, "n": 1}}})
        cells.append({"id": cid, "kind": "distill", "method": name, "seed": 0, "status": "done", "metrics": {"m": mean}})
        scores[cid] = {"m": dict(enumerate(values))}
    results = {"leaderboard": rows, "cells": cells, "metric_info": {"m": {"higher_is_better": not lower, "scale": scale}}}
    return Collected(results, scores)


def test_significant_beats_passes_on_a_consistent_gain():
    collected = hand_collected([10.0 + (i % 3) for i in range(30)], [8.0 + (i % 3) for i in range(30)])
    (result,) = run_checks(collected, [CheckSpec(method="a", metric="m", beats="b", significant=True)])
    assert result.passed, result.reason
    assert "diff +2.00" in result.numbers and "n=30" in result.numbers


def test_significant_beats_counts_the_training_seed_variance():
    """Three seeds each, a gain that swings from seed to seed: over examples alone (seeds
    averaged) it looks certain; over seeds and examples it is not significant."""
    rows, cells, scores, seeds = [], [], {}, {}
    swing = {0: 6.0, 1: -3.0, 2: 0.5}  # a's per-seed gain over b
    for name in ("a", "b"):
        ids = []
        for seed, gain in swing.items():
            cid = f"{name}{seed}"
            values = [10.0 + (i % 5) + (gain if name == "a" else 0.0) for i in range(40)]
            cells.append({"id": cid, "kind": "distill", "method": name, "seed": seed, "status": "done",
                          "metrics": {"m": sum(values) / 40}})
            scores[cid], seeds[cid] = {"m": dict(enumerate(values))}, seed
            ids.append(cid)
        mean = sum(c["metrics"]["m"] for c in cells if c["method"] == name) / 3
        rows.append({"dataset": "d", "teacher": "t", "student": "s", "method": name, "label": name,
                     "kind": "distill", "failed": 0, "pending": 0, "cells": ids, "recipes": ["r"],
                     "metrics": {"m": {"mean": mean, "std": 4.5, "n": 3}}})
    results = {"leaderboard": rows, "cells": cells, "metric_info": {"m": {"higher_is_better": True}}}
    (result,) = run_checks(Collected(results, scores, seeds), [CheckSpec(method="a", metric="m", beats="b",
                                                                         significant=True)])
    assert not result.passed and "diff +1.17" in result.numbers
    assert "not significant" in result.reason and "40 paired test examples and 3 vs 3 training seeds" in result.reason
    (one_seed,) = run_checks(Collected(results, scores), [CheckSpec(method="a", metric="m", beats="b",
                                                                    significant=True)])
    assert one_seed.passed, one_seed.reason  # seeds unknown: examples only, the gain looks certain


def test_beats_follows_the_metric_direction():
    collected = hand_collected([1.0, 2.0], [3.0, 4.0], lower=True)
    (result,) = run_checks(collected, [CheckSpec(method="a", metric="m", beats="b")])
    assert result.passed
    (result,) = run_checks(collected, [CheckSpec(method="b", metric="m", beats="a")])
    assert not result.passed and "lower is better" in result.reason


def test_bounds_and_unknown_method():
    collected = hand_collected([10.0, 20.0], [0.0, 0.0])
    ok, too_high, missing = run_checks(collected, [
        CheckSpec(method="a", metric="m", at_least=14, at_most=16),
        CheckSpec(method="a", metric="m", at_most=12),
        CheckSpec(method="c", metric="m", at_least=0)])
    assert ok.passed and not too_high.passed and "mean 15 > 12" in too_high.reason
    assert not missing.passed and "unknown method 'c'; valid: a, b" in missing.reason


def allowed(tol, metric="m", scale="percent", expected=10.0, low=None, high=None, hib=True):
    return tol.allowed(metric, scale, expected, low, high, hib)[0]


def test_tolerance_parsing_absolute_relative_both_and_spread():
    tol = Tolerance.parse(["0.5", "m=2", "k=10%", "j=0.01+5%", "s=spread"], {"default": 3.0, "other": "1.0"})
    assert allowed(tol, "m") == 2.0 and allowed(tol, "other") == 1.0 and allowed(tol, "x") == 0.5
    assert allowed(tol, "k", expected=-0.4) == pytest.approx(0.04)  # relative to the magnitude
    assert allowed(tol, "j", expected=2.0) == pytest.approx(0.11)
    assert allowed(tol, "s", expected=10.0, low=9.0, high=11.5) == pytest.approx(1.0)
    assert allowed(tol, "s", expected=10.0, low=9.0, high=11.5, hib=False) == pytest.approx(1.5)
    assert tol.to_json() == {"default": "0.5", "m": "2", "other": "1", "k": "10%", "j": "0.01+5%", "s": "spread"}
    for bad in ("m=much", "-1", "5%%", "m="):
        with pytest.raises(ValueError, match="METRIC=TOL"):
            Tolerance.parse([bad])


def test_default_tolerance_follows_the_metric_scale_and_the_measured_spread():
    tol = Tolerance()
    # No interval recorded: a point on a x100 score, a tenth of the value in nats.
    assert allowed(tol, scale="percent", expected=30.0) == 1.0
    assert allowed(tol, scale="nats", expected=0.06) == pytest.approx(0.007)  # 0.001 + 10%
    assert allowed(tol, scale="nats", expected=0.0) == pytest.approx(0.001)
    # An interval narrower than the scale's allowance tightens it; a wider one never loosens it.
    assert allowed(tol, scale="percent", expected=30.0, low=29.6, high=30.3) == pytest.approx(0.4)
    assert allowed(tol, scale="percent", expected=30.0, low=20.0, high=40.0) == 1.0
    assert allowed(tol, scale="nats", expected=0.06, low=0.058, high=0.07, hib=False) == pytest.approx(0.007)
    assert allowed(tol, scale="nats", expected=0.06, low=0.059, high=0.062, hib=False) == pytest.approx(0.002)
    # An empty interval (a deterministic row) still allows a tenth of the scale's amount.
    assert allowed(tol, scale="percent", expected=30.0, low=30.0, high=30.0) == pytest.approx(0.1)


def test_a_doubled_nats_metric_fails_at_the_defaults_where_the_old_absolute_point_passed():
    collected = hand_collected([0.13, 0.12, 0.14], [1.0, 1.0, 1.0], lower=True, scale="nats")
    golden = {"rows": [{"dataset": "d", "teacher": "t", "student": "s", "method": "a", "metrics": {"m": 0.065}}]}
    (result,) = compare_baseline(collected, golden, Tolerance())
    assert not result.passed, result.numbers
    assert result.reason.startswith("rose by 0.065 > tolerance 0.0075 (lower is better)")
    assert "from nats default 0.001+10%" in result.numbers
    (old_gate,) = compare_baseline(collected, golden, Tolerance.parse(["0.5"]))
    assert old_gate.passed  # what an absolute tolerance made of this change


def test_lower_is_better_baseline_with_explicit_tolerance():
    collected = hand_collected([5.0, 5.0], [1.0, 1.0], lower=True)
    golden = {"rows": [{"dataset": "d", "teacher": "t", "student": "s", "method": "a", "metrics": {"m": 4.0}}]}
    (result,) = compare_baseline(collected, golden, Tolerance.parse(["0.5"]))
    assert not result.passed and result.reason.startswith("rose by 1 > tolerance 0.5 (lower is better)")
    assert compare_baseline(collected, golden, Tolerance.parse(["1.5"]))[0].passed


# -- the command on real runs -----------------------------------------------------------------

def test_recipe_check_passes_with_exit_0(grid):
    _, run, _ = grid
    result = runner.invoke(app, ["check", str(run)])
    assert result.exit_code == 0, result.output
    assert "PASS sft rougeL >= 2 [tiny: t -> s]: mean 5.00 ± 0.79 over 2 seeds" in result.output
    assert "1 checks: 1 passed, 0 failed" in result.output


def test_the_fixture_check_fails_on_a_model_that_learned_nothing(grid, copy_with_checks, tmp_path):
    """The same threshold on the grid's teacher, which 4 SFT steps leave generating '........'."""
    _, run, _ = grid
    checked = copy_with_checks(run, tmp_path / "run", [{"method": "teacher", "metric": "rougeL", "at_least": 2}])
    result = runner.invoke(app, ["check", str(checked)])
    assert result.exit_code == 1
    assert "FAIL teacher rougeL >= 2 [tiny: t -> -]: mean 0 < 2" in result.output


def test_significant_beats_fails_on_a_tiny_run_with_the_reason(grid, copy_with_checks, tmp_path):
    _, run, _ = grid
    checked = copy_with_checks(run, tmp_path / "run", [
        {"method": "sft", "metric": "rougeL", "at_least": 2},
        {"method": "sft", "metric": "rougeL", "beats": "fkl", "significant": True}])
    result = runner.invoke(app, ["check", str(checked)])
    assert result.exit_code == 1
    line = next(l for l in result.output.splitlines() if l.startswith("FAIL sft beats fkl on rougeL significantly"))
    assert "not significant: p=" in line and ">= 0.05 over 3 paired test examples and 2 vs 2 training seeds" in line
    assert "2 checks: 1 passed, 1 failed" in result.output


def test_weight_bounds_read_the_training_logs(grid, copy_with_checks, tmp_path):
    _, run, _ = grid
    checked = copy_with_checks(run, tmp_path / "run", [
        {"method": "mix", "metric": "weight/fkl", "at_least": 0, "at_most": 1},
        {"method": "mix", "metric": "weight/rkl", "at_most": 0.4},
        {"method": "fkl", "metric": "strategy/alpha", "at_least": 0}])
    result = runner.invoke(app, ["check", str(checked)])
    assert result.exit_code == 1
    assert "3 checks: 1 passed, 2 failed" in result.output
    assert "FAIL mix weight/rkl <= 0.4 [tiny: t -> s]: max 0.5 > 0.4" in result.output
    assert "FAIL fkl strategy/alpha >= 0 [tiny: t -> s]: no `strategy/alpha` in the training logs of fkl" in result.output


def test_failed_cells_fail_the_checks_on_their_rows(grid, failed_run):
    _, run, _ = grid
    result = runner.invoke(app, ["check", str(run), str(failed_run)])
    assert result.exit_code == 1
    assert ("FAIL boom rougeL >= 0 [tiny: t -> s]: boom has 1 failed or unfinished cell(s): "
            "seed 0 failed (weighting plugin 'boom' (from boom.py) raised in weights(): "
            "RuntimeError: deliberate failure in boom)") in result.output
    assert "2 checks: 1 passed, 1 failed" in result.output  # the grid's own check still passes


def test_golden_baseline_write_and_compare_with_tolerance(grid, failed_run, tmp_path):
    _, run, _ = grid
    golden = tmp_path / "golden.json"
    result = runner.invoke(app, ["check", str(run), "--write-baseline", str(golden)])
    assert result.exit_code == 0, result.output
    baseline = json.loads(golden.read_text())
    assert [r["method"] for r in baseline["rows"]] == ["teacher", "sft", "fkl", "mix"]
    assert "tolerance" not in baseline
    assert runner.invoke(app, ["check", str(run), "--baseline", str(golden)]).exit_code == 0

    mix = next(r for r in baseline["rows"] if r["method"] == "mix")
    mix["metrics"]["rougeL"] += 5.0  # the run now looks 5 points worse than the baseline
    golden.write_text(json.dumps(baseline))
    result = runner.invoke(app, ["check", str(run), "--baseline", str(golden)])
    assert result.exit_code == 1
    assert "FAIL mix rougeL vs baseline [tiny: t -> s]: dropped by 5 > tolerance 1 (higher is better)" in result.output
    assert runner.invoke(app, ["check", str(run), "--baseline", str(golden), "--tolerance", "6"]).exit_code == 0
    per_metric = runner.invoke(app, ["check", str(run), "--baseline", str(golden), "--tolerance", "0",
                                     "--tolerance", "rougeL=5.5"])
    assert per_metric.exit_code == 0, per_metric.output

    refused = runner.invoke(app, ["check", str(failed_run), "--write-baseline", str(tmp_path / "bad.json")])
    assert refused.exit_code == 1 and "not writing a baseline from an incomplete run" in refused.output
    assert not (tmp_path / "bad.json").exists()
    bad = runner.invoke(app, ["check", str(run), "--tolerance", "lots"])
    assert bad.exit_code == 2 and "expected TOL or METRIC=TOL" in bad.output  # a flag mistake: bad usage

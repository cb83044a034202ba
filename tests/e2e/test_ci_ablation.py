"""recipes/ci-ablation.yaml runs from a cold cache and its checks pass, as CI would run them;
a golden baseline catches a doubled teacher-forced RKL at the default tolerances."""
import json
from pathlib import Path

from typer.testing import CliRunner

from arkd_bench.cli import app

RECIPE = Path(__file__).parents[2] / "recipes" / "ci-ablation.yaml"
runner = CliRunner()


def test_ci_ablation_recipe_passes_its_checks(tmp_path):
    run = runner.invoke(app, ["run", str(RECIPE), "--out", str(tmp_path / "ci"), "--cache-dir", str(tmp_path / "cache")])
    assert run.exit_code == 0, run.output
    check = runner.invoke(app, ["check", str(tmp_path / "ci")])
    assert check.exit_code == 0, check.output
    assert "4 checks: 4 passed, 0 failed" in check.output

    golden = tmp_path / "golden.json"
    assert runner.invoke(app, ["check", str(tmp_path / "ci"), "--write-baseline", str(golden)]).exit_code == 0
    assert runner.invoke(app, ["check", str(tmp_path / "ci"), "--baseline", str(golden)]).exit_code == 0
    baseline = json.loads(golden.read_text())
    rkl = next(r for r in baseline["rows"] if r["method"] == "rkl")
    # The baseline's RKL student had half the teacher-forced RKL: the run now shows it doubled.
    for key in ("metrics", "low", "high"):
        rkl[key]["tf_rkl"] /= 2
    golden.write_text(json.dumps(baseline))
    summary = tmp_path / "summary.md"
    gate = runner.invoke(app, ["check", str(tmp_path / "ci"), "--baseline", str(golden)],
                         env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert gate.exit_code == 1, gate.output
    failed = [l for l in gate.output.splitlines() if l.startswith("::error ")]
    assert len(failed) == 1 and "FAIL rkl tf_rkl vs baseline" in failed[0] and "(lower is better)" in failed[0]
    assert "❌ **FAIL** | rkl tf_rkl vs baseline" in summary.read_text()
    # What the former default (an absolute point) made of the same change:
    assert runner.invoke(app, ["check", str(tmp_path / "ci"), "--baseline", str(golden), "--tolerance", "1"]
                         ).exit_code == 0

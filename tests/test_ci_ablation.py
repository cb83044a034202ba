"""recipes/ci-ablation.yaml runs from a cold cache and its checks pass, as CI would run them."""
from pathlib import Path

from typer.testing import CliRunner

from arkd_bench.cli import app

RECIPE = Path(__file__).parent.parent / "recipes" / "ci-ablation.yaml"
runner = CliRunner()


def test_ci_ablation_recipe_passes_its_checks(tmp_path):
    run = runner.invoke(app, ["run", str(RECIPE), "--out", str(tmp_path / "ci"), "--cache-dir", str(tmp_path / "cache")])
    assert run.exit_code == 0, run.output
    check = runner.invoke(app, ["check", str(tmp_path / "ci")])
    assert check.exit_code == 0, check.output
    assert "4 checks: 4 passed, 0 failed" in check.output

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from arkd_bench.cli import app

FIXTURES = Path(__file__).parents[1] / "fixtures"
runner = CliRunner()


# Recipes for users with files this machine lacks: validate must say exactly that, and nothing else.
NEEDS_EXTERNAL = {"minillm-gpt2.yaml": ("data/minillm/", "not in the Hugging Face cache")}


def test_validate_accepts_the_shipped_recipes():
    for recipe in sorted(Path("recipes").glob("*.yaml")) + [FIXTURES / "tiny.yaml"]:
        result = runner.invoke(app, ["validate", str(recipe)])
        if recipe.name in NEEDS_EXTERNAL:
            assert result.exit_code == 1, result.output
            for line in result.output.splitlines():
                assert line.startswith(f"{recipe}:") and any(why in line for why in NEEDS_EXTERNAL[recipe.name]), line
            continue
        assert result.exit_code == 0, (recipe, result.output)
        assert "valid" in result.output


def test_validate_typo_exits_1_with_file_line_and_suggestion(tmp_path):
    text = (FIXTURES / "tiny.yaml").read_text().replace("name: fixed,", "name: fixd,")
    recipe = tmp_path / "typo.yaml"
    recipe.write_text(text)
    (tmp_path / "tiny_pairs.jsonl").write_text((FIXTURES / "tiny_pairs.jsonl").read_text())
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "fixd" in l)
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 1
    assert f"{recipe}:{line}: methods[1].weighting.name: unknown weighting 'fixd'; did you mean 'fixed'?" in result.output
    assert "Traceback" not in result.output


def test_plugins_json_lists_builtins_and_the_reference_plugin():
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    by_name = {(e["kind"], e["name"]): e for e in entries}
    for kind, name in [("divergence", "fkl"), ("divergence", "rkl"), ("weighting", "fixed"),
                       ("metric", "rougeL"), ("dataset", "jsonl"), ("reporter", "md")]:
        assert (kind, name) in by_name
    # installed with `pip install -e plugins/arkd-bench-confidence`, found by its entry point
    assert by_name[("weighting", "confidence")]["origin"] == "confidence"
    assert by_name[("weighting", "confidence")]["options"]["power"]["default"] == 1.0


def test_python_dash_m_and_help_do_not_import_torch():
    code = ("import sys, runpy; sys.argv=['arkd-bench','--help']\n"
            "try:\n    runpy.run_module('arkd_bench', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "run" in out and "validate" in out
    assert out.strip().endswith("False")


def test_dry_run_lists_cells(tmp_path):
    result = runner.invoke(app, ["run", str(FIXTURES / "tiny.yaml"), "--out", str(tmp_path / "r"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "4 cells would run" in result.output
    assert not (tmp_path / "r").exists()


def test_bad_shard_is_a_clear_error():
    result = runner.invoke(app, ["run", str(FIXTURES / "tiny.yaml"), "--shard", "3/2", "--dry-run"])
    assert result.exit_code == 2  # bad usage, not a bad recipe
    assert "expected i/n" in result.output

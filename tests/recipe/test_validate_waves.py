"""`validate` answers schema, plugin and name errors without importing torch or transformers;
the transformers config checks come only once those pass. A missing required section is a
located error like any other."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.recipe.schema import Recipe

FIXTURES = Path(__file__).parents[1] / "fixtures"
BAD = FIXTURES / "bad_recipes"
REQUIRED = [name for name, info in Recipe.model_fields.items() if info.is_required()]

# Validates one recipe in a fresh interpreter and says which heavy modules it imported.
PROBE = """
import sys
from typer.testing import CliRunner
from arkd_bench.cli import app
result = CliRunner().invoke(app, ["validate", sys.argv[1]])
print(result.exit_code, *(name in sys.modules for name in ("torch", "transformers", "datasets")))
print(result.output)
"""


def modules_after_validating(recipe: Path) -> tuple[int, dict[str, bool], str]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(recipe)], capture_output=True, text=True,
                          cwd=recipe.parent, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    first, _, output = done.stdout.partition("\n")
    code, *flags = first.split()
    return int(code), dict(zip(("torch", "transformers", "datasets"), (f == "True" for f in flags))), output


def test_the_required_sections_are_those_tested_here():
    assert REQUIRED == ["name", "teachers", "students", "datasets", "methods"]


@pytest.mark.parametrize("section", REQUIRED)
def test_a_missing_required_section_is_located_without_an_exception_name(tmp_path, section):
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    (tmp_path / "tiny_pairs.jsonl").write_text((FIXTURES / "tiny_pairs.jsonl").read_text())
    del recipe[section]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.output.strip().splitlines()[0] == f"{path}:1: {section}: field required", result.output
    for line in result.output.strip().splitlines():  # whatever else is said is located too
        assert line.startswith(f"{path}:"), line
    assert "could not be checked" not in result.output and "Error" not in result.output


@pytest.mark.parametrize("name", ["type_steps_string", "type_unknown_top_field", "ref_unknown_divergence",
                                  "opt_unknown_weighting_option", "ref_check_unknown_metric"])
def test_schema_plugin_and_name_errors_import_neither_torch_nor_transformers(name):
    code, imported, output = modules_after_validating(BAD / f"{name}.yaml")
    assert code == 1, output
    assert not imported["torch"] and not imported["transformers"], (imported, output)


def test_an_arkd_method_is_checked_without_building_its_policy_network(tmp_path):
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    (tmp_path / "tiny_pairs.jsonl").write_text((FIXTURES / "tiny_pairs.jsonl").read_text())
    recipe["methods"].append({"name": "arkd", "objective": ["fkl", "rkl"], "weighting": "arkd"})
    recipe["train"]["steps"] = "three"
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    code, imported, output = modules_after_validating(path)
    assert code == 1 and "train.steps" in output, output
    assert not imported["torch"], output


def test_an_architecture_typo_is_reported_once_the_schema_errors_are_fixed(tmp_path):
    text = (BAD / "sem_unknown_architecture.yaml").read_text()
    (tmp_path / "pairs.jsonl").write_text((BAD / "pairs.jsonl").read_text())
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("steps: 3,", "steps: three,"))
    result = CliRunner().invoke(app, ["validate", str(broken)])
    assert "train.steps" in result.output and "gtp2" not in result.output, result.output
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(fixed)])
    assert result.exit_code == 1 and "'gtp2' is not a transformers model type" in result.output, result.output

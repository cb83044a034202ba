"""Real runs of the tiny grid shared by the report tests (one per session: they take seconds).

Evaluation uses 3 test examples, so no paired comparison can be significant: the exact
sign-flip test over 3 examples never gives p below 2/8.
"""
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from arkd_bench.cli import app

FIXTURES = Path(__file__).parent.parent / "fixtures"
runner = CliRunner()


def tiny_recipe(folder: Path, **changes) -> Path:
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    recipe["seeds"] = [0, 1]
    recipe["eval"]["max_examples"] = 3
    recipe.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "tiny_pairs.jsonl", folder)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def run_recipe(recipe: Path, out: Path, cache: Path, *extra: str):
    return runner.invoke(app, ["run", str(recipe), "--out", str(out), "--cache-dir", str(cache), *extra])


def with_checks(run: Path, dest: Path, checks: list[dict]) -> Path:
    """A copy of a run folder whose recipe carries `checks` (check reads the run's recipe.yaml)."""
    shutil.copytree(run, dest)
    recipe = yaml.safe_load((dest / "recipe.yaml").read_text())
    recipe["checks"] = checks
    (dest / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return dest


@pytest.fixture(scope="session")
def grid(tmp_path_factory):
    """(recipe, run folder, cache) of the whole tiny grid with two seeds."""
    root = tmp_path_factory.mktemp("grid")
    recipe = tiny_recipe(root / "recipe")
    result = run_recipe(recipe, root / "run", root / "cache")
    assert result.exit_code == 0, result.output
    return recipe, root / "run", root / "cache"


@pytest.fixture(scope="session")
def failed_run(tmp_path_factory, grid):
    """A run whose only method fails in every cell (a weighting plugin that raises)."""
    _, _, cache = grid
    root = tmp_path_factory.mktemp("failed")
    (root / "recipe").mkdir()
    (root / "recipe" / "boom.py").write_text(
        "from arkd_bench import WeightingStrategy, hookimpl\n\n"
        "class Boom(WeightingStrategy):\n"
        "    name = 'boom'\n\n"
        "    def weights(self, features):\n"
        "        raise RuntimeError('deliberate failure in boom')\n\n"
        "@hookimpl\n"
        "def arkd_register_weightings(register):\n"
        "    register(Boom)\n")
    recipe = tiny_recipe(root / "recipe", name="tiny-boom", plugins=["boom.py"], seeds=[0],
                         methods=[{"name": "boom", "objective": ["fkl", "rkl"], "weighting": "boom"}],
                         checks=[{"method": "boom", "metric": "rougeL", "at_least": 0}])
    recipe_data = yaml.safe_load(recipe.read_text())
    recipe_data["eval"]["baselines"] = []
    recipe.write_text(yaml.safe_dump(recipe_data, sort_keys=False))
    result = run_recipe(recipe, root / "run", cache)
    assert result.exit_code == 1 and "deliberate failure in boom" in result.output, result.output
    return root / "run"


@pytest.fixture
def run_tiny():
    """`run_tiny(recipe, out, cache, *options)`: the CLI's `run`, for tests that make more runs."""
    return run_recipe


@pytest.fixture
def copy_with_checks():
    """`copy_with_checks(run, dest, checks)`: see `with_checks`."""
    return with_checks

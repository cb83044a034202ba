"""Settings that run in a single process only (the fused head, strategies whose trial updates
or probe gradients keep each term's gradient apart) are refused when a recipe is loaded under
several processes (WORLD_SIZE, as torchrun sets it), naming the field and why, not at the
first cell that needs them; one process loads the same recipe."""
import pytest
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.recipe.loader import RecipeError
from arkd_bench.recipe.validate import load_recipe
from helpers import write_tiny_recipe


def single_process_settings(recipe: dict) -> None:
    recipe["train"]["fused_head"] = True
    recipe["methods"] += [{"name": "look", "objective": ["fkl", "rkl"], "weighting": {"name": "lookahead"}},
                          {"name": "hyper", "objective": ["fkl", "rkl"], "weighting": {"name": "hypergrad"}}]


def test_one_process_loads_what_several_refuse(tmp_path, monkeypatch):
    path = write_tiny_recipe(tmp_path, single_process_settings)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert len(load_recipe(path).recipe.methods) == 4
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    found = {p.path: p.message for p in caught.value.problems}
    assert set(found) == {("train", "fused_head"), ("methods", 2, "weighting", "name"),
                          ("methods", 3, "weighting", "name")}, found
    assert "single process only" in found[("train", "fused_head")] and "2" in found[("train", "fused_head")]
    assert "trial" in found[("methods", 2, "weighting", "name")]
    assert "probe_grad" in found[("methods", 3, "weighting", "name")]


def test_validate_under_several_processes_says_the_field_and_why(tmp_path, monkeypatch):
    path = write_tiny_recipe(tmp_path, lambda r: r["train"].update(fused_head=True))
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1 and "train.fused_head" in result.output, result.output
    assert "single process only" in result.output

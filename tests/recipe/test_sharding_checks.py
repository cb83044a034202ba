"""train.sharding: `none` (the default) leaves every cell id as it was; `fsdp` enters the ids of
the cells it trains, and what it does not run with is refused when the recipe is loaded, under
any number of processes, naming the field and why."""
import pytest
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.recipe.loader import RecipeError
from arkd_bench.recipe.matrix import expand
from arkd_bench.recipe.validate import load_recipe
from helpers import write_tiny_recipe


def ids(path) -> dict[str, str]:
    return {c.method: c.id for c in expand(load_recipe(path).recipe)}


def test_none_keeps_the_cell_ids_and_fsdp_changes_only_the_distilled_ones(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    plain = ids(write_tiny_recipe(tmp_path / "plain"))
    none = ids(write_tiny_recipe(tmp_path / "none", lambda r: r["train"].update(sharding="none")))
    fsdp = ids(write_tiny_recipe(tmp_path / "fsdp", lambda r: r["train"].update(sharding="fsdp")))
    assert none == plain
    assert {m for m in plain if plain[m] != fsdp[m]} == {"fkl", "mix"}


def everything_fsdp_refuses(recipe: dict) -> None:
    recipe["train"].update(sharding="fsdp", fused_head=True, checkpoint_every=1, select_best=True, eval_every=1,
                           mixed_precision="bf16")
    recipe["methods"].append({"name": "look", "objective": ["fkl", "rkl"], "weighting": {"name": "lookahead"}})


@pytest.mark.parametrize("world_size", [None, "2"])
def test_fsdp_refuses_what_it_does_not_run_with(tmp_path, monkeypatch, world_size):
    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    with pytest.raises(RecipeError) as caught:
        load_recipe(write_tiny_recipe(tmp_path, everything_fsdp_refuses))
    found = {p.path: p.message for p in caught.value.problems}
    assert set(found) == {("train", "fused_head"), ("train", "select_best"),
                          ("methods", 2, "weighting", "name")}, found  # mixed_precision and checkpoints run sharded
    assert all("sharding" in message for message in found.values()), found
    assert "fused_head: false" in found[("train", "fused_head")]
    assert "trial" in found[("methods", 2, "weighting", "name")]


def test_fsdp_refuses_lora_students(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)

    def lora(recipe):
        recipe["train"]["sharding"] = "fsdp"
        recipe["students"][0]["lora"] = {"r": 4, "target_modules": ["c_attn"]}

    with pytest.raises(RecipeError) as caught:
        load_recipe(write_tiny_recipe(tmp_path, lora))
    found = {p.path: p.message for p in caught.value.problems}
    assert set(found) == {("students", 0, "lora")} and "train.sharding: none" in found[("students", 0, "lora")]


def test_fsdp_alone_loads_and_validate_names_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert load_recipe(write_tiny_recipe(tmp_path / "ok", lambda r: r["train"].update(sharding="fsdp"))
                       ).recipe.train.sharding == "fsdp"
    path = write_tiny_recipe(tmp_path / "bad", lambda r: r["train"].update(sharding="fsdp", fused_head=True))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1 and "train.fused_head" in result.output, result.output
    assert "train.sharding: fsdp" in result.output
    result = CliRunner().invoke(app, ["validate", str(write_tiny_recipe(
        tmp_path / "typo", lambda r: r["train"].update(sharding="zero3")))])
    assert result.exit_code == 1 and "train.sharding" in result.output and "fsdp" in result.output, result.output


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fsdp_loads_with_mixed_precision_and_checkpoints(tmp_path, monkeypatch, precision):
    monkeypatch.setenv("WORLD_SIZE", "2")
    loaded = load_recipe(write_tiny_recipe(tmp_path, lambda r: r["train"].update(
        sharding="fsdp", mixed_precision=precision, checkpoint_every=2)))
    train = loaded.recipe.train
    assert (train.sharding, train.mixed_precision, train.checkpoint_every) == ("fsdp", precision, 2)

"""Settings chosen on the dev split (`arkd-bench select`, recipe `select:`): the candidates,
the dev-split grid, the rule, the recipe for the run on test, and a whole tiny selection that
never reads the test split."""
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.recipe.loader import RecipeError
from arkd_bench.recipe.matrix import expand
from arkd_bench.recipe.schema import Recipe
from arkd_bench.recipe.select import (
    Candidate,
    Row,
    candidates,
    choose,
    final_recipe,
    selection_recipe,
    tabulate,
)
from arkd_bench.recipe.validate import check_plugin_references, load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
TINY_SELECT = FIXTURES / "tiny_select.yaml"
NAMES = ["arkd[lr=0.001,reward=published]", "arkd[lr=0.001,reward=paired]",
         "arkd[lr=0.03,reward=published]", "arkd[lr=0.03,reward=paired]"]


def fixture_recipe(**select_changes) -> Recipe:
    data = yaml.safe_load(TINY_SELECT.read_text())
    data["select"].update(select_changes)
    return Recipe.model_validate(data)


def test_candidates_are_the_product_of_the_axes_with_the_settings_each_changes(builtin_plugins):
    found = candidates(fixture_recipe(), builtin_plugins)
    assert [c.name for c in found] == NAMES
    # lr 0.001 is ARKD's default and `published` sets nothing: the method as written changes nothing
    assert [c.changed for c in found] == [0, 1, 1, 2]
    assert found[3].patch == {"weighting.options.lr": 0.03, "weighting.options.paired_alpha": 0.5}
    assert found[3].spec["weighting"] == {"name": "arkd", "options": {"update_every": 1, "lr": 0.03,
                                                                      "paired_alpha": 0.5}}
    assert found[3].settings == {"lr": 0.03, "reward": "paired"}


def test_the_selection_grid_scores_candidates_on_the_validation_split_only():
    recipe = fixture_recipe()
    data = selection_recipe(recipe, FIXTURES, candidates(recipe))
    grid = Recipe.model_validate(data)
    assert grid.eval.split == "valid" and grid.eval.baselines == ["sft"]
    assert [m.name for m in grid.methods] == NAMES  # the candidates only: no fkl row
    assert grid.seeds == [0] and grid.train.steps == 2 and [m.name for m in grid.eval.metrics] == ["tf_fkl"]
    assert grid.select is None and grid.checks == [] and grid.base_dir == str(FIXTURES)
    assert [c.kind for c in expand(grid)] == ["sft"] + ["distill"] * 4
    assert all(c.config["eval"]["split"] == "valid" for c in expand(grid))


def test_eval_only_datasets_stay_out_of_the_selection_grid_and_of_any_dev_split_run():
    data = yaml.safe_load(TINY_SELECT.read_text())
    data["datasets"].append({"name": "held-out", "source": "jsonl", "eval_only": True,
                             "options": {"path": "tiny_pairs.jsonl", "valid_size": 0, "test_size": 6}})
    recipe = Recipe.model_validate(data)
    grid = selection_recipe(recipe, FIXTURES, candidates(recipe))
    assert [d["name"] for d in grid["datasets"]] == ["tiny"]
    data["eval"]["split"] = "valid"
    with pytest.raises(ValueError, match="eval_only datasets .held-out. are test sets"):
        Recipe.model_validate(data)


def test_the_default_split_keeps_cell_ids():
    recipe = fixture_recipe()
    assert all("split" not in c.config["eval"] for c in expand(recipe))
    dev = recipe.model_copy(update={"eval": recipe.eval.model_copy(update={"split": "valid"})})
    assert {c.id for c in expand(recipe)}.isdisjoint(c.id for c in expand(dev))


def _row(name: str, scores: dict, changed: int, index: int, problem=None) -> Row:
    candidate = Candidate("m", name, {}, {}, {}, index, changed)
    return Row(candidate, scores=scores, problem=problem)


def test_the_rule_takes_the_best_mean_and_breaks_ties_by_fewest_changes_then_order():
    rows = [_row("a", {0: 10.0, 1: 12.0}, 2, 0), _row("b", {0: 11.5, 1: 11.5}, 1, 1),
            _row("c", {0: 13.0, 1: 13.0}, 3, 2, problem="cell x (seed 0): diverged")]
    choice = choose(rows, higher_is_better=True, tie_within=0.0)
    assert choice.chosen.candidate.name == "b"  # c failed: not eligible, however good
    assert rows[0].mean == 11.0 and rows[0].std == pytest.approx(1.4142135623730951)
    assert rows[2].mean is None
    assert choose(rows, higher_is_better=False, tie_within=0.0).chosen.candidate.name == "a"
    tied = choose(rows, higher_is_better=True, tie_within=0.5)  # a (11.0) ties b (11.5)
    assert tied.chosen.candidate.name == "b" and tied.tied == ["a", "b"] and "fewest settings" in tied.why
    same = [_row("x", {0: 1.0}, 1, 0), _row("y", {0: 1.0}, 1, 1)]
    assert choose(same, True, 0.0).chosen.candidate.name == "x"  # then the first listed
    assert choose([_row("z", {}, 0, 0, problem="no cells")], True, 0.0).chosen is None


def test_scores_average_a_seeds_datasets_and_a_missing_seed_is_a_problem():
    candidate = Candidate("m", "m[a=1]", {"a": 1}, {}, {}, 0, 1)
    cells = [{"kind": "distill", "method": "m[a=1]", "seed": s, "dataset": d, "status": "done", "id": f"{d}{s}",
              "metrics": {"rougeL": v}} for s, d, v in [(0, "p", 10.0), (0, "q", 20.0), (1, "p", 12.0), (1, "q", 22.0)]]
    (row,) = tabulate([candidate], cells, "rougeL", [0, 1])
    assert row.scores == {0: 15.0, 1: 17.0} and row.mean == 16.0 and row.problem is None
    (row,) = tabulate([candidate], cells[:2], "rougeL", [0, 1])
    assert row.mean is None and "no score for seeds [1]" in row.problem
    failed = [{**cells[0], "status": "failed", "error": "TrainingDiverged: loss is nan", "metrics": {}}]
    (row,) = tabulate([candidate], failed, "rougeL", [0])
    assert "loss is nan" in row.problem


def test_the_resolved_recipe_carries_the_choice_under_the_methods_name(builtin_plugins):
    recipe = fixture_recipe()
    found = candidates(recipe, builtin_plugins)
    final = Recipe.model_validate(final_recipe(recipe, FIXTURES, {"arkd": found[3]}, "chosen on dev"))
    arkd = next(m for m in final.methods if m.name == "arkd")
    assert arkd.weighting.options == {"update_every": 1, "lr": 0.03, "paired_alpha": 0.5}
    assert final.select is None and final.seeds == [0, 1, 2] and final.eval.split == "test"
    original = {c.id for c in expand(recipe) if c.method != "arkd"}
    assert original == {c.id for c in expand(final) if c.method != "arkd"}  # the other rows keep their cells
    unchanged = Recipe.model_validate(final_recipe(recipe, FIXTURES, {"arkd": found[0]}, "chosen on dev"))
    assert {c.id for c in expand(unchanged)} == {c.id for c in expand(recipe)}


@pytest.mark.parametrize("change, where, message", [
    ({"methods": ["arkdd"]}, "select.methods[0]", "did you mean 'arkd'"),
    ({"metric": "bertscore"}, "select.metric", "not one of eval.metrics (rougeL, tf_fkl)"),
    ({"axes": [{"name": "lr", "path": "train.lr", "values": [0.1]}]}, "select.axes[0].values[0]",
     "an axis sets objective., weighting., data."),
    ({"axes": [{"name": "lr", "path": "weighting.options.lr", "values": [0.001, -1]}]},
     "select.axes[0].values[1]", "method 'arkd' with lr=-1: weighting.options.lr"),
    ({"axes": [{"name": "lr", "path": "weighting.options.lr", "values": [0.001, 0.0010000001]}]},
     "select.axes[0].values", "values that read alike in candidate names"),
    ({"axes": [{"name": "r", "choices": {"rouge": {"weighting.options.reward": "rouge"}}},
               {"name": "p", "path": "weighting.options.paired_alpha", "values": [0.5]}]},
     "select.axes", "candidate arkd[r=rouge,p=0.5]: weighting.options: paired_alpha only applies to reward"),
])
def test_select_mistakes_are_located_in_the_recipe(change, where, message):
    data = yaml.safe_load(TINY_SELECT.read_text())
    data["select"].update(change)
    with pytest.raises(RecipeError) as caught:
        load_recipe(TINY_SELECT, text=yaml.safe_dump(data, sort_keys=False))
    text = caught.value.format()
    assert f": {where}: " in text and message in text, text


def test_the_final_run_needs_three_seeds():
    data = yaml.safe_load(TINY_SELECT.read_text())
    data["seeds"] = [0]
    with pytest.raises(RecipeError, match=r"tiny_select.yaml:\d+: seeds: .*at least 3, got \[0\]"):
        load_recipe(TINY_SELECT, text=yaml.safe_dump(data, sort_keys=False))


def test_alpha_sweep_select_is_alpha_sweep_plus_its_selection(builtin_plugins):
    recipe, _ = parse_recipe((ROOT / "recipes" / "alpha-sweep-select.yaml").read_text(), "alpha-sweep-select.yaml")
    plain, _ = parse_recipe((ROOT / "recipes" / "alpha-sweep.yaml").read_text(), "alpha-sweep.yaml")
    assert recipe.model_dump(exclude={"select"}) == plain.model_dump(exclude={"select"})
    assert check_plugin_references(recipe, builtin_plugins) == []
    found = candidates(recipe, builtin_plugins)
    assert len(found) == 24 and found[0].changed == 0
    assert {c.settings["lr"] for c in found} == {0.001, 0.003, 0.01, 0.03}
    assert {c.settings["reward"] for c in found} == {"published", "paired", "first_order"}
    grid = Recipe.model_validate(selection_recipe(recipe, ROOT / "recipes", found))
    assert grid.train.steps == 100 and grid.eval.split == "valid" and grid.eval.max_examples is None


class _Sealed(list):
    """A split that may be counted but not read."""

    def __iter__(self):
        raise AssertionError("the test split was read during selection")

    def __getitem__(self, index):
        raise AssertionError("the test split was read during selection")


@pytest.fixture(scope="module")
def selection(tmp_path_factory):
    """The fixture's selection, run once with its test split sealed."""
    from arkd_bench.data.jsonl import JsonlSource

    original = JsonlSource.load

    def sealed(self, base_dir=None):
        splits = original(self, base_dir)
        splits.test = _Sealed(splits.test)
        return splits

    root = tmp_path_factory.mktemp("select")
    out = root / "sel"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JsonlSource, "load", sealed)
        result = CliRunner().invoke(app, ["select", str(TINY_SELECT), "--out", str(out),
                                          "--cache-dir", str(root / "cache")])
    assert result.exit_code == 0, result.output
    return root, out, result.output


def test_a_tiny_selection_scores_every_candidate_on_dev_and_writes_the_table(selection):
    _, out, output = selection
    record = json.loads((out / "selection.json").read_text())
    entry = record["methods"]["arkd"]
    assert [c["name"] for c in entry["candidates"]] == NAMES
    assert record["split"] == "valid" and record["metric"] == "tf_fkl" and record["higher_is_better"] is False
    assert record["steps"] == 2 and record["final_steps"] == 3 and record["final_seeds"] == [0, 1, 2]
    means = {c["name"]: c["mean"] for c in entry["candidates"]}
    assert all(isinstance(m, float) for m in means.values())
    assert entry["chosen"] == min(means, key=means.get)  # tf_fkl: lower is better
    # the recorded scores are the cells' own dev scores
    results = json.loads((out / "results.json").read_text())
    by_method = {c["method"]: c for c in results["cells"]}
    for c in entry["candidates"]:
        assert c["scores"] == {"0": by_method[c["name"]]["metrics"]["tf_fkl"]}
    table = (out / "selection.md").read_text()
    assert all(name in table for name in NAMES) and f"chosen: **{entry['chosen']}**" in table
    assert "short runs" in table and "the test split is not evaluated" in table
    assert "on the first 8 validation examples" in table  # the probe batch is among the dev examples
    assert "validation (dev) examples" in (out / "leaderboard.md").read_text()
    assert f"arkd-bench run {out / 'selected.yaml'}" in output


def test_every_generation_of_the_selection_is_a_validation_example(selection):
    from arkd_bench.data.jsonl import JsonlSource

    _, out, _ = selection
    splits = JsonlSource(path="tiny_pairs.jsonl", valid_size=8, test_size=6).load(FIXTURES)
    valid, test = {e.prompt for e in splits.valid}, {e.prompt for e in splits.test}
    results = json.loads((out / "results.json").read_text())
    assert {c["method"] for c in results["cells"]} == {"sft", *NAMES}
    for cell in results["cells"]:
        assert json.loads((out / "cells" / cell["id"] / "scores.json").read_text())["settings"]["split"] == "valid"
        lines = (out / "cells" / cell["id"] / "generations.jsonl").read_text().splitlines()
        prompts = [json.loads(line)["prompt"] for line in lines]
        assert len(prompts) == 8 and set(prompts) == valid and not set(prompts) & test


def test_the_selected_recipe_holds_the_choice_and_runs_on_test(selection):
    _, out, _ = selection
    record = json.loads((out / "selection.json").read_text())
    chosen = next(c for c in record["methods"]["arkd"]["candidates"] if c["name"] == record["methods"]["arkd"]["chosen"])
    text = (out / "selected.yaml").read_text()
    assert "# | candidate |" in text  # the table travels with the recipe into the final run folder
    loaded = load_recipe(out / "selected.yaml")
    recipe = loaded.recipe
    arkd = next(m for m in recipe.methods if m.name == "arkd")
    expected = {"update_every": 1, **{path.split(".")[-1]: v for path, v in chosen["patch"].items()}}
    if chosen["changed"] == 0:
        expected = {"update_every": 1}  # the method as written
    assert arkd.weighting.options == expected
    assert recipe.select is None and recipe.seeds == [0, 1, 2] and recipe.eval.split == "test"
    assert loaded.base_dir == FIXTURES and [m.name for m in recipe.methods] == ["fkl", "arkd"]


def test_a_second_selection_on_the_same_folder_resumes(selection):
    root, out, _ = selection
    result = CliRunner().invoke(app, ["select", str(TINY_SELECT), "--out", str(out), "--cache-dir", str(root / "cache")])
    assert result.exit_code == 0, result.output
    assert "ran 0 cells, skipped 5 finished" in result.output


def test_select_needs_a_select_section():
    result = CliRunner().invoke(app, ["select", str(FIXTURES / "tiny.yaml"), "--dry-run"])
    assert result.exit_code == 1 and "no `select:` section" in result.output


def test_run_says_it_does_not_apply_select():
    result = CliRunner().invoke(app, ["run", str(TINY_SELECT), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "note: run uses the methods as written" in result.output and "10 cells would run" in result.output

from pathlib import Path

import pytest

from arkd_bench.recipe.loader import RecipeError
from arkd_bench.recipe.matrix import expand, shard
from arkd_bench.recipe.validate import load_recipe

FIXTURES = Path(__file__).parents[1] / "fixtures"
TINY = (FIXTURES / "tiny.yaml").read_text()


def errors_for(tmp_path, text, plugins=None):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    (tmp_path / "tiny_pairs.jsonl").write_text((FIXTURES / "tiny_pairs.jsonl").read_text())
    with pytest.raises(RecipeError) as exc:
        load_recipe(path, plugins=plugins)
    return exc.value.format().splitlines(), path


def line_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_tiny_recipe_is_valid(builtin_plugins):
    loaded = load_recipe(FIXTURES / "tiny.yaml", plugins=builtin_plugins)
    assert [m.name for m in loaded.recipe.methods] == ["fkl", "mix"]
    assert loaded.recipe.methods[0].weighting.name == "fixed"


def test_typo_in_weighting_name_gives_line_and_suggestion(tmp_path, builtin_plugins):
    text = TINY.replace("weighting: {name: fixed,", "weighting: {name: fixd,")
    lines, path = errors_for(tmp_path, text, builtin_plugins)
    assert lines == [f"{path}:{line_of(text, 'fixd')}: methods[1].weighting.name: unknown weighting 'fixd'; "
                     f"did you mean 'fixed'? valid: {', '.join(builtin_plugins.registry('weighting').names())}"]


def test_unknown_field_names_the_valid_ones(tmp_path, builtin_plugins):
    text = TINY.replace("train: {steps: 3,", "train: {stepz: 3, steps: 3,")
    lines, path = errors_for(tmp_path, text, builtin_plugins)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:{line_of(text, 'stepz')}: train.stepz: unknown field; valid fields here:")
    assert "steps" in lines[0]


def test_bad_plugin_option_is_checked_by_its_options_model(tmp_path, builtin_plugins):
    text = TINY.replace("options: {weights: [0.5, 0.5]}", "options: {weights: [0.5, 0.5], mu: 3}")
    lines, path = errors_for(tmp_path, text, builtin_plugins)
    assert lines == [f"{path}:{line_of(text, 'mu: 3')}: methods[1].weighting.options.mu: unknown field; "
                     "weighting 'fixed' takes: weights"]


def test_weights_must_match_terms(tmp_path, builtin_plugins):
    text = TINY.replace("weights: [0.5, 0.5]", "weights: [1.0]")
    lines, _ = errors_for(tmp_path, text, builtin_plugins)
    assert "methods[1].weighting: fixed weighting has 1 weights for 2 objective terms" in lines[0]


def test_every_problem_is_reported_at_once(tmp_path, builtin_plugins):
    text = TINY.replace("objective: [fkl]", "objective: [fkll]").replace("metrics: [rougeL]", "metrics: [rouge]")
    lines, _ = errors_for(tmp_path, text, builtin_plugins)
    assert any("methods[0].objective[0].name: unknown divergence 'fkll'; did you mean 'fkl'?" in l for l in lines)
    assert any("eval.metrics[0].name: unknown metric 'rouge'" in l for l in lines)
    assert any("checks[0].metric" in l for l in lines)  # the check names a metric no longer evaluated


def test_invalid_yaml_reports_its_line(tmp_path):
    lines, path = errors_for(tmp_path, "name: x\nteachers: [\n")
    assert lines[0].startswith(f"{path}:") and "invalid YAML" in lines[0]


def test_missing_required_field(tmp_path, builtin_plugins):
    text = "\n".join(l for l in TINY.splitlines() if not l.startswith("name:"))
    lines, path = errors_for(tmp_path, text, builtin_plugins)
    first_key = line_of(text, "seeds:")  # a missing key points at the start of its mapping
    assert lines == [f"{path}:{first_key}: name: field required"]


def test_pretrained_and_scratch_are_exclusive(tmp_path, builtin_plugins):
    text = TINY.replace("  - name: s\n", "  - name: s\n    path: gpt2\n")
    lines, _ = errors_for(tmp_path, text, builtin_plugins)
    assert "students[0]: give exactly one of `path`" in lines[0]


def test_cells_have_stable_content_hash_ids(builtin_plugins):
    recipe = load_recipe(FIXTURES / "tiny.yaml", plugins=builtin_plugins).recipe
    cells = expand(recipe)
    assert [(c.kind, c.method) for c in cells] == [("teacher", "teacher"), ("sft", "sft"),
                                                  ("distill", "fkl"), ("distill", "mix")]
    assert len({c.id for c in cells}) == len(cells)
    assert [c.id for c in expand(recipe)] == [c.id for c in cells]
    # renaming the recipe or reordering methods keeps ids; changing a setting changes them
    renamed = recipe.model_copy(update={"name": "other", "methods": recipe.methods[::-1]})
    assert {c.id for c in expand(renamed)} == {c.id for c in cells}
    def changed_by(**train):
        other = recipe.model_copy(update={"train": recipe.train.model_copy(update=train)})
        return {c.method for c in expand(other) if c.id not in {x.id for x in cells}}

    # baseline cells are keyed only by what determines them: distillation settings leave them
    assert changed_by(steps=4) == changed_by(lr=0.01) == changed_by(student_sft=False) == {"fkl", "mix"}
    # the SFT stages of teacher and student read the sequence length
    assert changed_by(max_length=32) == {"teacher", "sft", "fkl", "mix"}


def test_shards_partition_the_grid(builtin_plugins):
    recipe = load_recipe(FIXTURES / "tiny.yaml", plugins=builtin_plugins).recipe
    recipe = recipe.model_copy(update={"seeds": [0, 1, 2]})
    cells = expand(recipe)
    parts = [shard(cells, i, 3) for i in (1, 2, 3)]
    assert sorted(c.id for p in parts for c in p) == sorted(c.id for c in cells)
    with pytest.raises(ValueError):
        shard(cells, 4, 3)


@pytest.mark.parametrize("count", [2, 3, 4])
def test_shards_are_balanced_on_small_grids(builtin_plugins, count):
    """Every shard of a grid with at least `count` cells gets work, and sizes differ by at
    most one, for grids of 3 to 20 cells (ids hashed modulo n left shards idle)."""
    recipe = load_recipe(FIXTURES / "tiny.yaml", plugins=builtin_plugins).recipe
    cells = expand(recipe.model_copy(update={"seeds": list(range(10))}))
    for size in range(3, 21):
        if size < count:
            continue
        grid = cells[:size]
        parts = [shard(grid, i, count) for i in range(1, count + 1)]
        sizes = [len(p) for p in parts]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1, (size, sizes)
        assert sorted(c.id for p in parts for c in p) == sorted(c.id for c in grid)
        # a shard keeps the grid's order (baselines first)
        assert all([c.id for c in p] == [c.id for c in grid if c in p] for p in parts)


def test_checks_may_read_logged_weights_of_a_term(tmp_path, builtin_plugins):
    ok = TINY + "  - {method: mix, metric: weight/rkl, at_least: 0, at_most: 1}\n"
    path = tmp_path / "ok.yaml"
    path.write_text(ok)
    (tmp_path / "tiny_pairs.jsonl").write_text((FIXTURES / "tiny_pairs.jsonl").read_text())
    load_recipe(path, plugins=builtin_plugins)
    lines, _ = errors_for(tmp_path, TINY + "  - {method: mix, metric: weight/jsd, at_most: 1}\n", builtin_plugins)
    assert "checks[1].metric: unknown objective term of method 'mix' 'jsd'; valid: fkl, rkl" in lines[0]

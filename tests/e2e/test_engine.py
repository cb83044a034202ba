"""The training engine through real runs of tiny grids: determinism, the teacher cache,
failures that stay in their cell, local pretrained models, saved artifacts."""
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.testing import tiny_gpt2, tiny_tokenizer
from arkd_bench.models.build import ModelError
from arkd_bench.models.vocabulary import check_vocabularies

FIXTURES = Path(__file__).parents[1] / "fixtures"
runner = CliRunner()


def tiny_recipe(**changes):
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    recipe["checks"] = []
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    return recipe


def run_recipe(tmp_path: Path, recipe: dict, name: str, cache: str = "cache", expect_exit: int = 0):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    shutil.copy(FIXTURES / "tiny_pairs.jsonl", folder)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = runner.invoke(app, ["run", str(folder / "recipe.yaml"), "--out", str(folder / "out"),
                                 "--cache-dir", str(tmp_path / cache)])
    assert result.exit_code == expect_exit, result.output
    return folder / "out"


def cells(out: Path) -> dict[str, dict]:
    return {c["method"]: c for c in json.loads((out / "results.json").read_text())["cells"]}


def train_log(out: Path, cell_id: str) -> list[dict]:
    return [json.loads(line) for line in (out / "cells" / cell_id / "train_log.jsonl").read_text().splitlines()]


def test_same_recipe_and_seed_give_identical_results(tmp_path):
    recipe = tiny_recipe()
    a = run_recipe(tmp_path, recipe, "a", cache="cache_a")
    b = run_recipe(tmp_path, recipe, "b", cache="cache_b")
    ca, cb = cells(a), cells(b)
    assert {m: c["metrics"] for m, c in ca.items()} == {m: c["metrics"] for m, c in cb.items()}
    assert [r["loss"] for r in train_log(a, ca["mix"]["id"])] == [r["loss"] for r in train_log(b, cb["mix"]["id"])]


def test_teacher_cache_gives_the_online_teacher_losses_with_one_pass(tmp_path):
    cached = run_recipe(tmp_path, tiny_recipe(eval={"baselines": []}), "cached")
    online = run_recipe(tmp_path, tiny_recipe(eval={"baselines": []}, train={"teacher_cache_mb": 0}), "online")
    stats_c = json.loads((cached / "cache.json").read_text())
    stats_o = json.loads((online / "cache.json").read_text())
    assert stats_c["teacher_passes"] == 1 and stats_c["online_teacher_batches"] == 0
    assert stats_o["teacher_passes"] == 0 and stats_o["online_teacher_batches"] == 2 * 3  # 2 methods x 3 steps
    for method in ("fkl", "mix"):
        lc = [r["loss"] for r in train_log(cached, cells(cached)[method]["id"])]
        lo = [r["loss"] for r in train_log(online, cells(online)[method]["id"])]
        assert lc == pytest.approx(lo, rel=1e-4)
    # the cache setting is a resource, not part of what a cell computes
    assert {c["id"] for c in cells(cached).values()} == {c["id"] for c in cells(online).values()}


EXPLODING = '''
import torch
from arkd_bench import Divergence, hookimpl

class Explode(Divergence):
    """A divergence that is NaN from the first step (to test failure handling)."""
    name = "explode"

    def per_token(self, t_logp, s_logp):
        return (s_logp.exp() * float("nan")).sum(-1)

@hookimpl
def arkd_register_divergences(register):
    register(Explode)
'''


def test_nan_loss_fails_only_its_cell_and_names_step_and_term(tmp_path):
    folder = tmp_path / "nan"
    folder.mkdir()
    (folder / "explode.py").write_text(EXPLODING)
    recipe = tiny_recipe(plugins=["explode.py"], eval={"baselines": []})
    recipe["methods"].append({"name": "boom", "objective": ["fkl", "explode"]})
    out = run_recipe(tmp_path, recipe, "nan", expect_exit=1)
    by_method = cells(out)
    assert by_method["fkl"]["status"] == "done" and by_method["mix"]["status"] == "done"
    assert by_method["boom"]["status"] == "failed"
    error = by_method["boom"]["error"]  # finite models, NaN values: the divergence is named, not the loss
    assert error.startswith("PluginOutputError: divergence plugin 'explode' (Explode.per_token in ")
    assert "per_token() at step 0: non-finite values on " in error and "explode.py" in error
    assert "boom (1 failed)" in (out / "leaderboard.md").read_text()


def test_vocabulary_mismatch_names_both_sizes():
    # a student with fewer rows than the run's tokenizer (not padding: ids 300-319 have no row)
    tokenizer = tiny_tokenizer()
    teacher, student = tiny_gpt2(tokenizer), tiny_gpt2(tiny_tokenizer(vocab_size=300))
    with pytest.raises(ModelError, match=r"student 's' has a vocabulary of 300 entries, fewer than the "
                                         r"tokenizer's 320 \(teacher 320, student 300\)"):
        check_vocabularies(teacher, student, tokenizer, "t", "s")


def check_saved_rewards(log: list[dict], state: dict, micro_batches: int) -> None:
    """ARKD's saved state (3 steps, update_every 4: no update yet) against its training log:
    every sampled action waits in the buffer with the reward logged at the step that sampled
    it, and the advantages and the baseline are those the documented rule gives from the
    logged rewards (b: moving average, decay 0.9, started at the first reward; z = (r - b) / s
    with s a bias-corrected running rms of r - b, decay 0.99, clipped at 5)."""
    from arkd_bench.weighting.arkd.rewards import _ADV_CLIP, _SCALE_DECAY

    rewards = [r["strategy/reward"] for r in log]  # measured at every step
    assert state["step"] == len(log) == 3 and state["since_update"] == 3 and state["pending"] == []
    b, sq, n, expected_z = None, 0.0, 0, []
    for r in rewards:
        if b is None:
            b, z = r, 0.0
        else:
            adv = r - b
            b = 0.9 * b + 0.1 * r
            scale = (sq / (1 - _SCALE_DECAY**n)) ** 0.5 if n else 0.0
            sq, n = _SCALE_DECAY * sq + (1 - _SCALE_DECAY) * adv * adv, n + 1
            z = max(-_ADV_CLIP, min(_ADV_CLIP, adv / scale)) if scale else 0.0
        expected_z.append(z)
    assert state["reward_avg"] == pytest.approx(b, rel=1e-12)
    assert [r["strategy/baseline"] for r in log][-1] == pytest.approx(b, rel=1e-12)
    assert n == 2 and expected_z[2] != 0.0  # the third reward was scored against a baseline and a scale
    ready = state["ready"]
    assert [t["step"] for t in ready] == [s for s in range(3) for _ in range(micro_batches)]
    for t in ready:
        assert t["reward"] == rewards[t["step"]] and t["z"] == pytest.approx(expected_z[t["step"]], rel=1e-9)
    for step in range(3):  # the step's last micro-batch drew the alpha the log shows
        last = [t for t in ready if t["step"] == step][-1]
        assert float(last["action"].mean()) == log[step]["strategy/alpha"] == log[step]["weight/fkl"]
    assert len({float(t["action"].mean()) for t in ready}) == len(ready)  # each micro-batch draws anew


def test_local_pretrained_teacher_and_saved_artifacts(tmp_path):
    tokenizer = tiny_tokenizer()
    tiny_gpt2(tokenizer, n_layer=1, n_embd=32).save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    recipe = tiny_recipe(teachers=[{"name": "local", "path": str(tmp_path / "teacher")}],
                         eval={"baselines": []}, train={"save_student": True, "grad_accum": 2})
    recipe["methods"] = [{"name": "arkd", "objective": ["fkl", "rkl"], "weighting": "arkd"},
                         {"name": "arkd-batch", "objective": ["fkl", "rkl"],
                          "weighting": {"name": "arkd", "options": {"reward": "batch"}}}]
    out = run_recipe(tmp_path, recipe, "local")
    by_method = cells(out)
    assert by_method["arkd-batch"]["status"] == "done"
    for rewarded in ("arkd", "arkd-batch"):  # probe reward (default) and training-batch reward
        folder = out / "cells" / by_method[rewarded]["id"]
        check_saved_rewards(train_log(out, by_method[rewarded]["id"]),
                            torch.load(folder / "strategy.pt", weights_only=True), micro_batches=2)
    cell = by_method["arkd"]
    assert cell["status"] == "done"
    folder = out / "cells" / cell["id"]
    from transformers import AutoModelForCausalLM

    student = AutoModelForCausalLM.from_pretrained(folder / "student")
    assert student.get_output_embeddings().weight.shape[0] == len(tokenizer)
    log = train_log(out, cell["id"])
    assert [r["step"] for r in log] == [0, 1, 2]
    assert all(0 <= r["weight/fkl"] <= 1 for r in log)


def test_dev_evaluation_selects_the_best_student(tmp_path):
    recipe = tiny_recipe(eval={"baselines": []}, train={"eval_every": 1, "select_best": True, "steps": 3})
    recipe["methods"] = recipe["methods"][:1]
    out = run_recipe(tmp_path, recipe, "best")
    (cell,) = cells(out).values()
    log = train_log(out, cell["id"])
    devs = [(r["step"], r["dev/rougeL"]) for r in log if "dev/rougeL" in r and not r.get("selected")]
    assert [s for s, _ in devs] == [0, 1, 2]
    selected = log[-1]
    assert selected["selected"] is True
    best_step, best_score = max(devs, key=lambda d: (d[1], -d[0]))
    assert (selected["step"], selected["dev/rougeL"]) == (best_step, best_score)


def test_select_best_without_dev_evaluation_is_rejected(tmp_path, builtin_plugins):
    from arkd_bench.recipe.loader import RecipeError
    from arkd_bench.recipe.validate import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(train={"select_best": True})))
    with pytest.raises(RecipeError, match="train: select_best needs eval_every > 0"):
        load_recipe(path, plugins=builtin_plugins)


def test_eval_only_datasets_get_tables_of_their_own(tmp_path):
    recipe = tiny_recipe()
    recipe["datasets"].append({"name": "held-out", "source": "jsonl", "eval_only": True,
                               "options": {"path": "tiny_pairs.jsonl", "split_seed": 7, "valid_size": 2,
                                           "test_size": 5}})
    out = run_recipe(tmp_path, recipe, "evalsets")
    results = json.loads((out / "results.json").read_text())
    main_rows = [r for r in results["leaderboard"] if r["dataset"] == "tiny"]
    extra_rows = [r for r in results["leaderboard"] if r["dataset"] == "held-out"]
    assert [r["method"] for r in extra_rows] == [r["method"] for r in main_rows] == ["teacher", "sft", "fkl", "mix"]
    fkl = next(r for r in extra_rows if r["method"] == "fkl")
    assert fkl["vs_reference"]["rougeL"]["n_examples"] == 5
    source = fkl["cells"][0].split("@")[0]
    generations = (out / "cells" / source / "evals" / "held-out" / "generations.jsonl").read_text().splitlines()
    assert len(generations) == 5
    assert "## held-out" in (out / "leaderboard.md").read_text()
    # only training datasets make cells
    assert len(json.loads((out / "run.json").read_text())["cells"]) == 4


def test_dataset_names_must_be_path_safe_and_one_must_train(tmp_path, builtin_plugins):
    from arkd_bench.recipe.loader import RecipeError
    from arkd_bench.recipe.validate import load_recipe

    bad = tiny_recipe()
    bad["datasets"][0]["name"] = "../escape"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(RecipeError, match=r"datasets\[0\]\.name: String should match pattern"):
        load_recipe(path, plugins=builtin_plugins)
    only_eval = tiny_recipe()
    only_eval["datasets"][0]["eval_only"] = True
    path.write_text(yaml.safe_dump(only_eval))
    with pytest.raises(RecipeError, match="at least one must be trained on"):
        load_recipe(path, plugins=builtin_plugins)


def test_trivial_baselines_score_the_prompt_and_the_commonest_answer(tmp_path):
    from collections import Counter

    from rouge_score import rouge_scorer

    recipe = tiny_recipe(eval={"baselines": ["echo", "constant"], "metrics": ["rougeL", "tf_fkl"]})
    recipe["methods"] = recipe["methods"][:1]
    out = run_recipe(tmp_path, recipe, "trivial")
    by_method = cells(out)
    assert set(by_method) == {"echo", "constant", "fkl"}
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for method in ("echo", "constant"):
        rows = [json.loads(line) for line in
                (out / "cells" / by_method[method]["id"] / "generations.jsonl").read_text().splitlines()]
        assert len(rows) == 6
        for row in rows:
            expected = 100 * max(scorer.score(ref, row["prediction"])["rougeL"].fmeasure for ref in row["references"])
            assert row["scores"]["rougeL"] == pytest.approx(expected)
            assert "tf_fkl" not in row["scores"]  # no model, no teacher-forced metric
        if method == "echo":
            assert all(row["prediction"] == row["prompt"] for row in rows)
        else:
            responses = [json.loads(line)["response"] for line in (FIXTURES / "tiny_pairs.jsonl").read_text().splitlines()]
            assert rows[0]["prediction"] in {r for r, n in Counter(responses).items() if n == max(Counter(responses).values())}
            assert len({row["prediction"] for row in rows}) == 1
    assert "tf_fkl" in by_method["fkl"]["metrics"]

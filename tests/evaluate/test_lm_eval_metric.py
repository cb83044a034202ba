"""The `lm_eval` metric: lm-evaluation-harness tasks scored on the model in memory.

The task is tests/fixtures/lm_eval_tasks/arkd_tiny_mc.yaml: eight multiple-choice questions
read from a local JSON Lines file, so nothing needs a hub. Its per-item scores are checked
against log-likelihoods computed here with the model itself (a forward pass per choice,
argmax against the gold answer), its stderr against the per-item scores, and a tiny grid puts
its columns in the leaderboard with intervals and paired comparisons over the items."""
import json
import math
import random
import statistics
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

TASKS = Path(__file__).parents[1] / "fixtures" / "lm_eval_tasks"
TASK = "arkd_tiny_mc"
ROWS = [json.loads(line) for line in (TASKS / f"{TASK}.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def in_task_folder(monkeypatch):
    """The task's `data_files` is relative: datasets resolves it against the working directory."""
    monkeypatch.chdir(TASKS)


def options(**changes):
    return {"tasks": [TASK], "include_path": [str(TASKS)], "include_defaults": False, "batch_size": 4, **changes}


def direct_scores(model, tokenizer):
    """(acc, acc_norm) per item from the model's own log-likelihood of each choice after the
    prompt: argmax against the gold answer; acc_norm divides by the choice's length in characters."""
    import torch

    acc, acc_norm = [], []
    for row in ROWS:
        context = f"Question: {row['question']}\nAnswer:"
        start = len(tokenizer.encode(context))
        lls = []
        for choice in row["choices"]:
            ids = tokenizer.encode(f"{context} {choice}")
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
            lls.append(sum(logp[i - 1, ids[i]].item() for i in range(start, len(ids))))
        assert len(set(lls)) == len(lls)  # no ties: the argmax is the model's
        acc.append(100.0 * (max(range(len(lls)), key=lls.__getitem__) == row["answer"]))
        acc_norm.append(100.0 * (max(range(len(lls)), key=lambda i: lls[i] / len(row["choices"][i])) == row["answer"]))
    return acc, acc_norm


def test_per_item_scores_are_the_models_own_choices(in_task_folder, torch_single_thread):
    pytest.importorskip("lm_eval")
    import torch

    from arkd_bench.evaluate.lm_eval_metric import LmEval
    from arkd_bench.testing import tiny_gpt2, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_gpt2(tokenizer, seed=0).train()
    vocabulary = len(tokenizer)
    metric = LmEval(**options(measures=["acc", "acc_norm"]))
    torch.manual_seed(7)
    random.seed(7)
    out = metric.score_benchmark(model, tokenizer)
    # the run's random streams, the model's mode and the shared tokenizer are left as they were
    after = (torch.rand(1).item(), random.random())
    torch.manual_seed(7)
    random.seed(7)
    assert after == (torch.rand(1).item(), random.random())
    assert model.training and len(tokenizer) == vocabulary

    acc, acc_norm = direct_scores(model.eval(), tokenizer)
    assert 0 < sum(acc) < 100 * len(ROWS) and acc != acc_norm  # seed 0: 3 of 8 right, 4 of 8 normalised
    assert list(out) == [f"{TASK}/acc", f"{TASK}/acc_norm"]
    assert out[f"{TASK}/acc"].scores == acc
    assert out[f"{TASK}/acc_norm"].scores == acc_norm
    for column, scores in ((f"{TASK}/acc", acc), (f"{TASK}/acc_norm", acc_norm)):
        summary = out[column].summary
        assert summary["n"] == len(ROWS) and summary["num_fewshot"] == 0 and summary["filter"] == "none"
        assert summary["mean"] == pytest.approx(statistics.mean(scores))
        # lm-eval's stderr of a mean: the items' sample standard deviation over sqrt(n)
        assert summary["stderr"] == pytest.approx(statistics.stdev(scores) / math.sqrt(len(scores)))
    items = out[f"{TASK}/acc"].items
    assert items[0] == {"prompt": f"Question: {ROWS[0]['question']}\nAnswer:",
                        "prediction": items[0]["prediction"], "references": [ROWS[0]["choices"][ROWS[0]["answer"]]]}
    for item, score in zip(items, acc):
        assert (item["prediction"] == item["references"][0]) == (score == 100.0)


def test_limit_and_unknown_names_and_measures(in_task_folder, torch_single_thread):
    pytest.importorskip("lm_eval")
    from arkd_bench.evaluate.lm_eval_metric import LmEval
    from arkd_bench.testing import tiny_gpt2, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_gpt2(tokenizer)
    out = LmEval(**options(limit=3)).score_benchmark(model, tokenizer)
    assert len(out[f"{TASK}/acc"].scores) == 3 and out[f"{TASK}/acc"].summary["n"] == 3
    with pytest.raises(ValueError, match=r"unknown task 'arkd_tiny_m'.*did you mean arkd_tiny_mc"):
        LmEval(**options(tasks=["arkd_tiny_m"])).score_benchmark(model, tokenizer)
    with pytest.raises(ValueError, match=r"logs no per-item 'f1'"):
        LmEval(**options(measures=["f1"])).score_benchmark(model, tokenizer)


def recipe_with(tmp_path: Path, metric) -> Path:
    fixtures = Path(__file__).parents[1] / "fixtures"
    recipe = yaml.safe_load((fixtures / "tiny.yaml").read_text(encoding="utf-8"))
    recipe["datasets"][0]["options"]["path"] = str(fixtures / "tiny_pairs.jsonl")
    recipe["eval"]["metrics"] = ["rougeL", metric]
    recipe.pop("checks", None)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def test_validate_without_lm_eval_says_how_to_install_it(tmp_path, monkeypatch):
    from arkd_bench.cli import app
    from arkd_bench.evaluate import lm_eval_metric

    monkeypatch.setattr(lm_eval_metric, "lm_eval_installed", lambda: False)
    path = recipe_with(tmp_path, {"name": "lm_eval", "options": {"tasks": ["arc_easy"]}})
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    assert "eval.metrics[1].options" in result.output and "pip install -e '.[lm-eval]'" in result.output
    assert "Traceback" not in result.output


def test_validate_checks_the_options(tmp_path):
    pytest.importorskip("lm_eval")
    from arkd_bench.cli import app

    good = recipe_with(tmp_path, {"name": "lm_eval", "options": options()})
    result = CliRunner().invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    bad = recipe_with(tmp_path, {"name": "lm_eval", "options": {"tasks": [TASK], "include_path": "no/such/folder",
                                                                  "limt": 3}})
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "limt" in result.output


def test_a_grid_ranks_and_pairs_students_on_the_task(tmp_path, in_task_folder):
    """The task's columns reach the leaderboard like any metric: a mean per row, an interval over
    the 8 items, a paired comparison with the reference over the same items; the cell keeps
    lm-eval's own value and stderr, and its generations.jsonl one record per item."""
    pytest.importorskip("lm_eval")
    from arkd_bench.testing import TINY_RECIPE, run_tiny

    run = run_tiny(tmp_path, methods=[{"name": "fkl", "objective": ["fkl"]}, {"name": "rkl", "objective": ["rkl"]}],
                   eval={**TINY_RECIPE["eval"], "metrics": ["rougeL", {"name": "lm_eval", "options": options()}],
                         "baselines": ["teacher"], "reference": "fkl"})
    column = f"{TASK}/acc"
    rows = {row["method"]: row for row in run.results["leaderboard"]}
    assert set(rows) == {"teacher", "fkl", "rkl"}
    for row in rows.values():
        assert {"rougeL", column} <= set(row["metrics"])
    assert "low" in rows["rkl"]["metrics"][column]
    assert rows["rkl"]["vs_reference"][column]["n_examples"] == len(ROWS)
    for cell in run.results["cells"]:
        folder = run.out / "cells" / cell["id"]
        scores = json.loads((folder / "scores.json").read_text(encoding="utf-8"))
        records = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
        items = [r for r in records if r.get("benchmark") == column]
        assert [r["example"] for r in items] == list(range(len(ROWS)))
        assert all(set(r["scores"]) == {column} for r in items)  # never mixed with the dataset's examples
        assert not any(column in r["scores"] for r in records if "benchmark" not in r)
        reported = scores["benchmarks"][column]
        assert scores["metrics"][column] == pytest.approx(statistics.mean(r["scores"][column] for r in items))
        assert reported["mean"] == pytest.approx(scores["metrics"][column]) and reported["stderr"] is not None
        assert cell["metrics"][column] == pytest.approx(scores["metrics"][column])

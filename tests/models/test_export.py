"""Students saved and exported as Hugging Face folders reload with transformers' own loaders and
reproduce the model exactly: the same logits, the same greedy generations as the run's."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.testing import TINY_RECIPE, run_tiny, tiny_gpt2, tiny_tokenizer
from arkd_bench.models.export import missing_parts, save_hf_model

runner = CliRunner()
TEXTS = ["Return the number of items in a container.", "def add(a, b): return a + b"]


def logits_of(model, tokenizer):
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


def test_saved_model_reloads_with_identical_logits_and_generation_config(tmp_path, torch_single_thread):
    tokenizer = tiny_tokenizer()
    model = tiny_gpt2(tokenizer, seed=3)
    with torch.no_grad():  # weights unlike any fresh init, as after training
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    folder = save_hf_model(model, tokenizer, tmp_path / "student")
    assert missing_parts(folder) == []
    reloaded = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    reloaded_tok = AutoTokenizer.from_pretrained(str(folder))
    assert reloaded_tok(TEXTS)["input_ids"] == tokenizer(TEXTS)["input_ids"]
    assert torch.equal(logits_of(reloaded, reloaded_tok), logits_of(model, tokenizer))
    generation = GenerationConfig.from_pretrained(str(folder))
    assert generation.eos_token_id == tokenizer.eos_token_id
    assert generation.pad_token_id == tokenizer.pad_token_id
    assert [p.name for p in tmp_path.iterdir()] == ["student"]  # no temporary folder left


@pytest.fixture(scope="module")
def run_with_students(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run = run_tiny(root, train={**TINY_RECIPE["train"], "save_student": True},
                   eval={**TINY_RECIPE["eval"], "baselines": ["sft"]})
    return root, run


def test_export_command_writes_a_folder_that_reproduces_the_cells_generations(run_with_students, tmp_path):
    from arkd_bench.evaluate.generate import GenerationSettings, generate

    _, run = run_with_students
    cell = next(c for c in run.results["cells"] if c["kind"] == "distill")
    out = tmp_path / "exported"
    result = runner.invoke(app, ["export", str(run.out), cell["id"][:6], str(out)])
    assert result.exit_code == 0, result.output
    assert f"pretrained={out}" in result.output
    assert missing_parts(out) == []
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    cell_dir = run.out / "cells" / cell["id"]
    records = [json.loads(line) for line in (cell_dir / "generations.jsonl").read_text().splitlines()]
    settings = GenerationSettings.model_validate(TINY_RECIPE["eval"]["generation"])
    predictions = generate(model, tokenizer, [r["prompt"] for r in records], settings)
    assert predictions == [r["prediction"] for r in records]  # greedy: the run's exact outputs
    saved = AutoModelForCausalLM.from_pretrained(str(cell_dir / "student")).eval()
    assert torch.equal(logits_of(model, tokenizer), logits_of(saved, tokenizer))


def test_export_errors_say_what_is_missing(run_with_students, tmp_path):
    _, run = run_with_students
    sft = next(c for c in run.results["cells"] if c["kind"] == "sft")
    result = runner.invoke(app, ["export", str(run.out), sft["id"], str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "no saved student (a sft cell trains no student of its own)" in result.output
    result = runner.invoke(app, ["export", str(run.out), "zzzz", str(tmp_path / "x")])
    assert result.exit_code == 1 and "no cell 'zzzz' (give METHOD, METHOD:SEED or a cell id); its cells are:" in \
        " ".join(result.output.split())
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    distill = next(c for c in run.results["cells"] if c["kind"] == "distill")
    result = runner.invoke(app, ["export", str(run.out), distill["id"], str(occupied)])
    assert result.exit_code == 1 and "already exists and is not empty" in result.output
    assert (occupied / "keep.txt").read_text() == "mine"


def test_a_run_without_save_student_says_how_to_get_one(tmp_path):
    from arkd_bench.rundir.store import RunDir
    from arkd_bench.models.export import ExportError, student_folder

    rundir = RunDir(tmp_path / "run")
    rundir.write("abcdef012345", "cell.json", {"kind": "distill"})
    rundir.set_status("abcdef012345", "done")
    rundir.write("abcdef012345", "scores.json", {})
    with pytest.raises(ExportError, match=r"set `train: \{save_student: true\}` in the recipe and run `arkd-bench run "):
        student_folder(rundir, "abcdef")

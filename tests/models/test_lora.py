"""LoRA students (`students[].lora`, peft): only the adapters train, the saved student is a
merged plain transformers model with the adapted model's logits, and bad settings are refused
where they are written."""
from __future__ import annotations

import json
import sys

import pytest
import torch
import yaml
from typer.testing import CliRunner

from arkd_bench.cli import app
from arkd_bench.data.collate import TrainingDataset
from arkd_bench.models.lora import LoraError, is_lora, merged_copy, with_lora
from arkd_bench.recipe.lora import LoraSpec
from arkd_bench.recipe.schema import MethodSpec, ModelSpec, TrainSpec
from arkd_bench.teacher.base import OnlineTeacher
from arkd_bench.testing import TINY_RECIPE, run_tiny
from arkd_bench.train.distill import Distiller
from helpers import FIXTURES, Killed, kill_at, untimed, weights_of
from helpers import examples_of_varied_length as examples

pytest.importorskip("peft")


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


def tiny_llama(tokenizer, seed: int, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def distilled_lora_student(tokenizer, plugins, steps: int = 3):
    """(weights before, the adapted student after `steps` distillation steps)."""
    from accelerate import Accelerator

    student = with_lora(tiny_llama(tokenizer, seed=1), LoraSpec(r=4, alpha=8, target_modules=["q_proj", "v_proj"]),
                        "students[0].lora")
    before = {name: p.detach().clone() for name, p in student.named_parameters()}
    method = MethodSpec.model_validate({"name": "m", "objective": ["fkl"]})
    train = TrainSpec.model_validate({"steps": steps, "batch_size": 4, "max_length": 96, "lr": 0.01})
    Distiller(student=student, teacher=OnlineTeacher(tiny_llama(tokenizer, seed=2, layers=1)), tokenizer=tokenizer,
              train_items=TrainingDataset(examples(16), tokenizer, 96).items, method=method, train=train,
              plugins=plugins, seed=0, accelerator=Accelerator(cpu=True)).run()
    return before, student


def test_only_the_adapters_train_and_the_merged_copy_has_the_adapted_logits(tokenizer, builtin_plugins, tmp_path):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    from arkd_bench.models.export import save_hf_model

    before, student = distilled_lora_student(tokenizer, builtin_plugins)
    changed = {name for name, p in student.named_parameters() if not torch.equal(p, before[name])}
    lora = {name for name in before if "lora_" in name}
    assert lora and changed == lora  # every adapter moved (lora_B starts at zero), nothing else
    assert {n for n, p in student.named_parameters() if p.requires_grad} == lora

    ids = torch.randint(3, len(tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))
    student.eval()
    with torch.no_grad():
        adapted = student(input_ids=ids).logits
        base = student.get_base_model()
        with student.disable_adapter():
            plain = base(input_ids=ids).logits
    assert not torch.allclose(adapted, plain, atol=1e-4)  # the adapters matter
    merged = merged_copy(student)
    assert type(merged) is LlamaForCausalLM and not is_lora(merged) and is_lora(student)
    assert not any("lora" in key for key in merged.state_dict())
    folder = save_hf_model(merged, tokenizer, tmp_path / "student")
    reloaded = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, adapted, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(student(input_ids=ids).logits, adapted)  # the student kept its adapters


def lora_distiller(tokenizer, plugins, **train):
    """A LoRA student (adapter dropout, so the RNG matters) distilled by FKL for 8 steps of 4 of
    16 examples: a resume at step 5 is mid-epoch."""
    from accelerate import Accelerator

    student = with_lora(tiny_llama(tokenizer, seed=1),
                        LoraSpec(r=4, alpha=8, dropout=0.2, target_modules=["q_proj", "v_proj"]), "students[0].lora")
    method = MethodSpec.model_validate({"name": "m", "objective": ["fkl"]})
    spec = TrainSpec.model_validate({"steps": 8, "batch_size": 4, "max_length": 96, "lr": 0.01, "log_every": 1,
                                     **train})
    return Distiller(student=student, teacher=OnlineTeacher(tiny_llama(tokenizer, seed=2, layers=1)),
                     tokenizer=tokenizer, train_items=TrainingDataset(examples(16), tokenizer, 96).items,
                     method=method, train=spec, plugins=plugins, seed=0, accelerator=Accelerator(cpu=True))


def test_a_stopped_lora_training_resumes_from_its_checkpoint_to_the_same_adapters(tokenizer, builtin_plugins,
                                                                                   tmp_path, monkeypatch):
    """The checkpoint holds the adapters and their optimizer state (the frozen base is not
    trained): stopped at step 6 after the checkpoint of step 4 and run again, the log and every
    weight equal an uninterrupted run's."""
    import arkd_bench.train.distill as distill

    whole = lora_distiller(tokenizer, builtin_plugins).run()
    build = distill.training_hooks
    monkeypatch.setattr(distill, "training_hooks", lambda *args: [kill_at(6), *build(*args)])
    with pytest.raises(Killed):
        lora_distiller(tokenizer, builtin_plugins, checkpoint_every=4).run(checkpoint_dir=tmp_path)
    monkeypatch.setattr(distill, "training_hooks", build)
    said = []
    resumed = lora_distiller(tokenizer, builtin_plugins, checkpoint_every=4).run(checkpoint_dir=tmp_path,
                                                                                   say=said.append)
    assert said and said[0].startswith("resumed from step 4")
    assert untimed(resumed.log) == untimed(whole.log)
    expected = weights_of(whole.student)
    got = weights_of(resumed.student)
    assert got.keys() == expected.keys() and any("lora_" in k for k in got)
    assert all(torch.equal(v, expected[k]) for k, v in got.items())


def test_an_unknown_target_module_is_located_and_lists_the_valid_ones(tokenizer):
    with pytest.raises(LoraError) as caught:
        with_lora(tiny_llama(tokenizer, seed=0), LoraSpec(target_modules=["c_attn"]), "students[1].lora")
    message = str(caught.value)
    assert message.startswith("students[1].lora.target_modules: ['c_attn']")
    for name in ("q_proj", "v_proj", "gate_proj"):
        assert name in message
    assert "lm_head" not in message.split("linear layers:")[1]


def test_the_lora_settings_enter_the_cell_id_only_when_set():
    from arkd_bench.recipe.matrix import expand
    from arkd_bench.recipe.schema import Recipe

    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    plain = Recipe.model_validate(recipe)
    assert "lora" not in plain.students[0].model_dump(mode="json")
    recipe["students"][0]["lora"] = {"r": 4}
    with_lora_ids = {c.id for c in expand(Recipe.model_validate(recipe)) if c.kind == "distill"}
    plain_ids = {c.id for c in expand(plain) if c.kind == "distill"}
    assert with_lora_ids.isdisjoint(plain_ids) and len(with_lora_ids) == len(plain_ids)


def validate(tmp_path, recipe: dict):
    (tmp_path / "tiny_pairs.jsonl").write_text((FIXTURES / "tiny_pairs.jsonl").read_text())
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["validate", str(path)])
    return result.exit_code, " ".join(result.output.split())


def test_validate_refuses_lora_on_a_teacher_with_fused_head_and_without_peft(tmp_path, monkeypatch):
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    recipe["students"][0]["lora"] = {"r": 4, "target_modules": ["c_attn"]}
    code, output = validate(tmp_path, recipe)
    assert code == 0, output
    recipe["teachers"][0]["lora"] = {"r": 4}
    recipe["train"]["fused_head"] = True
    code, output = validate(tmp_path, recipe)
    assert code == 1
    assert "teachers[0].lora: a teacher is never trained by distillation" in output
    assert "train.fused_head: fused_head reads the hidden states" in output and "(students[0])" in output
    del recipe["teachers"][0]["lora"], recipe["train"]["fused_head"]
    monkeypatch.setitem(sys.modules, "peft", None)  # as where peft is not installed
    code, output = validate(tmp_path, recipe)
    assert code == 1
    assert "students[0].lora: LoRA students need peft, which is not installed" in output
    assert "pip install 'arkd-bench[lora]'" in output
    with pytest.raises(LoraError, match=r"students\[0\].lora: LoRA students need peft"):
        with_lora(None, LoraSpec(), "students[0].lora")


def test_validate_refuses_unknown_lora_fields_naming_the_valid_ones(tmp_path):
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    recipe["students"][0]["lora"] = {"rank": 4}
    code, output = validate(tmp_path, recipe)
    assert code == 1 and "students[0].lora.rank" in output


def test_a_run_evaluates_the_adapted_student_and_saves_it_merged(tmp_path):
    """A GPT-2 (Conv1D layers, `all-linear`) LoRA student through a whole run: the saved
    student loads as a plain transformers model and gives the run's own generations."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

    from arkd_bench.evaluate.generate import GenerationSettings, generate

    student = {**TINY_RECIPE["students"][0], "lora": {"r": 4, "alpha": 8}}
    run = run_tiny(tmp_path, students=[student], train={**TINY_RECIPE["train"], "save_student": True})
    cell = next(c for c in run.results["cells"] if c["kind"] == "distill")
    cell_dir = run.out / "cells" / cell["id"]
    lora = json.loads((cell_dir / "provenance.json").read_text())["lora"]
    assert lora["r"] == 4 and lora["target_modules"] == "all-linear"
    assert 0 < lora["trainable_parameters"] < lora["parameters"] / 2
    model = AutoModelForCausalLM.from_pretrained(str(cell_dir / "student")).eval()
    assert type(model) is GPT2LMHeadModel and not any("lora" in k for k in model.state_dict())
    records = [json.loads(line) for line in (cell_dir / "generations.jsonl").read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(str(cell_dir / "student"))
    settings = GenerationSettings.model_validate(TINY_RECIPE["eval"]["generation"])
    assert generate(model, tokenizer, [r["prompt"] for r in records], settings) == [r["prediction"] for r in records]

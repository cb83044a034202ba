"""Memory levers on a tiny Llama: gradient checkpointing gives the step's loss and gradients
unchanged; attention implementations give the same logits."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from arkd_bench.data.collate import TrainingDataset
from arkd_bench.recipe.schema import MethodSpec, TrainSpec
from arkd_bench.teacher.base import OnlineTeacher
from arkd_bench.train.distill import Distiller
from helpers import examples_of_varied_length as examples


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


def tiny_llama(tokenizer, seed: int, layers: int = 2, attn_implementation: str | None = None):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.eos_token_id)
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def one_step(tokenizer, plugins, **train):
    """(the step's logged loss, each student parameter's gradient) of one distillation step."""
    from accelerate import Accelerator

    method = MethodSpec.model_validate({"name": "m", "objective": ["fkl", "rkl"]})
    spec = TrainSpec.model_validate({"steps": 1, "batch_size": 4, "max_length": 96, "lr": 0.01,
                                     "grad_clip": None, **train})
    student = tiny_llama(tokenizer, seed=1)
    d = Distiller(student=student, teacher=OnlineTeacher(tiny_llama(tokenizer, seed=2, layers=1)),
                  tokenizer=tokenizer, train_items=TrainingDataset(examples(16), tokenizer, 96).items,
                  method=method, train=spec, plugins=plugins, seed=0, accelerator=Accelerator(cpu=True))
    grads = {}
    for name, p in student.named_parameters():
        p.register_post_accumulate_grad_hook(lambda p, name=name: grads.__setitem__(name, p.grad.clone()))
    log = []
    d.run(on_log=log.append)
    return log[-1]["loss"], grads, student


def test_gradient_checkpointing_keeps_the_loss_and_gradients(tokenizer, builtin_plugins):
    loss, grads, plain = one_step(tokenizer, builtin_plugins)
    loss_ckpt, grads_ckpt, checkpointed = one_step(tokenizer, builtin_plugins, gradient_checkpointing=True)
    assert checkpointed.is_activation_checkpointing and not plain.is_activation_checkpointing
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    assert grads.keys() == grads_ckpt.keys() and len(grads) == len(list(plain.parameters()))
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)


def scratch_llama(name: str = "s", **extra):
    from arkd_bench.recipe.schema import ModelSpec

    return ModelSpec.model_validate({"name": name, "scratch": {"architecture": "llama", "config": {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2}}, **extra})


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_built_and_derived_models_follow_attn_implementation(tokenizer, attention):
    from arkd_bench.models.build import build_model
    from arkd_bench.recipe.schema import DeriveSpec, ModelSpec

    teacher = build_model(scratch_llama(attn_implementation=attention), tokenizer)
    assert teacher.config._attn_implementation == attention
    inherited = build_model(ModelSpec(name="d", derive=DeriveSpec(layers=[0])), tokenizer, teacher=teacher)
    assert inherited.config._attn_implementation == attention  # a derived student's default: its teacher's
    other = "sdpa" if attention == "eager" else "eager"
    own = build_model(ModelSpec(name="d", derive=DeriveSpec(layers=[0]), attn_implementation=other), tokenizer,
                      teacher=teacher)
    assert own.config._attn_implementation == other


def test_eager_and_sdpa_give_the_same_logits(tokenizer):
    from arkd_bench.models.build import build_model

    eager = build_model(scratch_llama(attn_implementation="eager"), tokenizer).eval()
    sdpa = build_model(scratch_llama(attn_implementation="sdpa"), tokenizer).eval()
    ids = torch.randint(3, len(tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding, as generation batches have
    with torch.no_grad():
        a, b = (m(input_ids=ids, attention_mask=mask).logits for m in (eager, sdpa))
    torch.testing.assert_close(a[mask.bool()], b[mask.bool()], rtol=1e-4, atol=1e-5)


def test_the_default_attention_stays_out_of_cell_ids():
    """A recipe that does not set attn_implementation keeps its cell ids and SFT cache keys (both
    hash the model spec's dump); one that sets it gets new ones."""
    assert "attn_implementation" not in scratch_llama().model_dump(mode="json")
    assert scratch_llama(attn_implementation="eager").model_dump(mode="json")["attn_implementation"] == "eager"


def test_adamw_8bit_without_bitsandbytes_is_refused_by_validate_naming_the_field(tmp_path, monkeypatch):
    """bitsandbytes made unimportable (as where it is not installed): validate fails at
    train.optimizer and says what to install; the optimizer itself raises the same way."""
    import shutil
    import sys
    from typer.testing import CliRunner

    from arkd_bench.cli import app
    from arkd_bench.train.optim import OptimizerUnavailable, adamw_class

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails, find_spec finds nothing
    fixtures = Path(__file__).parents[1] / "fixtures"
    recipe = yaml.safe_load((fixtures / "tiny.yaml").read_text())
    shutil.copy(fixtures / "tiny_pairs.jsonl", tmp_path)
    assert CliRunner().invoke(app, ["validate", str(write(tmp_path, recipe))]).exit_code == 0
    recipe["train"]["optimizer"] = "adamw_8bit"
    result = CliRunner().invoke(app, ["validate", str(write(tmp_path, recipe))])
    assert result.exit_code == 1
    assert "train.optimizer: adamw_8bit needs bitsandbytes" in result.output
    assert "pip install bitsandbytes" in result.output
    with pytest.raises(OptimizerUnavailable, match="train.optimizer: adamw_8bit needs bitsandbytes"):
        adamw_class("adamw_8bit")
    assert adamw_class("adamw") is torch.optim.AdamW


def write(folder, recipe):
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_the_default_optimizer_stays_out_of_cell_ids():
    from arkd_bench.recipe.matrix import _dump

    assert "optimizer" not in _dump(TrainSpec())
    assert _dump(TrainSpec(optimizer="adamw_8bit"))["optimizer"] == "adamw_8bit"

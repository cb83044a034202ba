"""The student is saved from `accelerator.get_state_dict` (which gathers a sharded model's
weights); on one process the folder is byte for byte the one `save_pretrained` writes alone."""
from __future__ import annotations

from arkd_bench.models.export import save_hf_model
from arkd_bench.testing import tiny_gpt2, tiny_tokenizer


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_saving_the_gathered_state_dict_writes_the_same_bytes(tmp_path, torch_single_thread):
    import torch
    from accelerate import Accelerator

    tokenizer = tiny_tokenizer()
    acc = Accelerator(cpu=True)
    prepared = acc.prepare(tiny_gpt2(tokenizer, n_layer=2, seed=3))
    with torch.no_grad():  # weights a training run moved, tied head included
        for p in prepared.parameters():
            p.add_(0.01)
    student = acc.unwrap_model(prepared)
    plain = files(save_hf_model(student, tokenizer, tmp_path / "plain"))
    gathered = files(save_hf_model(student, tokenizer, tmp_path / "gathered", state_dict=acc.get_state_dict(prepared)))
    assert "model.safetensors" in plain and len(plain) >= 4
    assert gathered == plain

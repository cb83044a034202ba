"""train.sharding: fsdp on two CPU processes (gloo), against the same model unsharded in one:
one clipped AdamW step on a split batch gives the same weights, generation inside
`full_parameters` runs a different number of forwards on each process without hanging and
gives the unsharded model's tokens, and the model trains on after it."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from arkd_bench.testing import tiny_tokenizer

WORLD = 2
CLIP = 0.05  # small enough that the clip acts: the step's gradient norm is about 1
PROMPTS = (["The cat", "A model of", "Knowledge is"], ["Distillation"])  # rank 0's, rank 1's
NEW_TOKENS = (12, 3)  # rank 0 runs four times as many decoding forwards as rank 1


def tiny_llama(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config)


def batch_of(tokenizer, rank=None):
    """The global batch (rank None) or a rank's half of it."""
    texts = ["the cat sat on the mat", "knowledge distillation of a teacher", "a student model", "tokens and logits"]
    if rank is not None:
        texts = texts[rank * 2:(rank + 1) * 2]
    encoded = tokenizer(texts, return_tensors="pt", padding="max_length", max_length=12, truncation=True)
    return encoded["input_ids"], encoded["attention_mask"]


def train_step(model, optimizer, ids, mask, global_tokens: int, world: int, clip) -> None:
    """Token-sum cross-entropy over the step's global token count, times the processes the
    gradient is averaged over (as the Distiller scales its loss)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    (loss * mask[:, 1:]).sum().mul(world / global_tokens).backward()
    clip(model.parameters(), CLIP)
    optimizer.step()
    optimizer.zero_grad()


def generations(model, tokenizer, rank: int):
    from arkd_bench.evaluate.generate import GenerationSettings, generate_ids

    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS[rank]]
    return generate_ids(model, tokenizer, prompts, GenerationSettings(max_new_tokens=NEW_TOKENS[rank], batch_size=2))


def _worker(rank: int, port: int, folder: str) -> None:
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    from arkd_bench.train.sharding import full_parameters, full_state_dict, is_sharded, shard_student

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    acc = Accelerator(cpu=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = shard_student(tiny_llama(tokenizer), acc.device, acc.num_processes)
    local = model.model.layers[0].mlp.up_proj.weight
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    tokens = int(batch_of(tokenizer)[1][:, 1:].sum())
    train_step(model, optimizer, *batch_of(tokenizer, rank), tokens, WORLD, acc.clip_grad_norm_)
    with full_parameters(model):
        generated = generations(model, tokenizer, rank)
    # sharded again: the model trains on, every forward gathering its layers
    train_step(model, optimizer, *batch_of(tokenizer, rank), tokens, WORLD, acc.clip_grad_norm_)
    state = full_state_dict(model)
    torch.save({"sharded": is_sharded(model), "local_rows": local.to_local().shape[0], "full_rows": local.shape[0],
                "generated": generated, "state": state}, f"{folder}/rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(folder: str, timeout: float = 240) -> None:
    context = mp.start_processes(_worker, args=(_free_port(), folder), nprocs=WORLD, join=False, start_method="spawn")
    waited = 0.0
    while not context.join(timeout=5):
        waited += 5
        if waited > timeout:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the two processes did not finish in {timeout} s (a collective that one process skipped)")


@pytest.mark.slow  # two spawned processes importing torch and transformers: about a minute on a busy 2-core machine
def test_sharded_step_generation_and_state_dict_match_the_unsharded_model(tmp_path, torch_single_thread):
    tokenizer = tiny_tokenizer()
    tokenizer.save_pretrained(str(tmp_path))
    run_two_processes(str(tmp_path))
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]

    reference = tiny_llama(tokenizer)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2)
    ids, mask = batch_of(tokenizer)
    tokens = int(mask[:, 1:].sum())
    train_step(reference, optimizer, ids, mask, tokens, 1, torch.nn.utils.clip_grad_norm_)
    unclipped = tiny_llama(tokenizer)  # the clip acts: a step without it lands elsewhere
    train_step(unclipped, torch.optim.AdamW(unclipped.parameters(), lr=1e-2), ids, mask, tokens, 1,
               lambda params, norm: None)
    assert not torch.allclose(unclipped.lm_head.weight, reference.lm_head.weight, atol=1e-4)

    for rank, result in enumerate(results):
        assert result["sharded"] and result["local_rows"] == result["full_rows"] // WORLD
        assert result["generated"] == generations(reference, tokenizer, rank)
        assert len(result["generated"]) == len(PROMPTS[rank])
    assert sum(len(row) for row in results[0]["generated"]) > sum(len(row) for row in results[1]["generated"])

    train_step(reference, optimizer, ids, mask, tokens, 1, torch.nn.utils.clip_grad_norm_)
    gathered, expected = results[0]["state"], reference.state_dict()
    assert results[1]["state"] == {}  # gathered to the main process's CPU only
    assert set(gathered) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(gathered[name], value, rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture
def one_rank_group(tmp_path):
    """A real one-process gloo group (FSDP2 needs one), gone after the test."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_one_rank_sharded_model_generates_only_gathered_and_trains_as_the_plain_one(
        one_rank_group, torch_single_thread):
    """The same paths on a one-process group, fast enough for every test run: a sharded
    model refuses to generate with its parameters sharded, generates the plain model's tokens
    inside `full_parameters`, is sharded again after it, and trains and gathers as the plain one."""
    from torch.distributed.tensor import DTensor

    from arkd_bench.train.sharding import full_parameters, full_state_dict, generate_options, is_sharded, shard_student

    tokenizer = tiny_tokenizer()
    plain, model = tiny_llama(tokenizer), shard_student(tiny_llama(tokenizer), torch.device("cpu"), 1)
    assert is_sharded(model) and not is_sharded(plain) and generate_options(plain) == {}
    assert all(isinstance(p, DTensor) for p in model.parameters())
    with pytest.raises(RuntimeError, match="full_parameters"):
        generations(model, tokenizer, 0)
    with full_parameters(model):
        assert generate_options(model) == {"synced_gpus": False}
        assert generations(model, tokenizer, 0) == generations(plain, tokenizer, 0)
    assert all(isinstance(p, DTensor) for p in model.parameters())

    ids, mask = batch_of(tokenizer)
    tokens = int(mask[:, 1:].sum())
    for net in (plain, model):
        train_step(net, torch.optim.AdamW(net.parameters(), lr=1e-2), ids, mask, tokens, 1,
                   torch.nn.utils.clip_grad_norm_)
    gathered = full_state_dict(model)
    assert set(gathered) == set(plain.state_dict())
    assert not torch.equal(gathered["lm_head.weight"], tiny_llama(tokenizer).lm_head.weight)  # it trained
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(gathered[name], value, rtol=1e-5, atol=1e-6, msg=name)

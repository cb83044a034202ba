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


def run_two_processes(folder: str, timeout: float = 240, worker=_worker) -> None:
    context = mp.start_processes(worker, args=(_free_port(), folder), nprocs=WORLD, join=False, start_method="spawn")
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


def precision_accelerator(precision: str, **scaler_options):
    """A CPU accelerator at `precision`, accelerate's process-wide state started afresh. accelerate
    turns fp16 off on CPU; CPU autocast has float16 and torch has a CPU GradScaler, so under fp16
    it is accelerate's own with those two switched on (as tests/train/test_mixed_precision.py)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    acc = Accelerator(cpu=True, mixed_precision=precision)
    if precision == "fp16":
        acc.native_amp = True
        acc.scaler = torch.amp.GradScaler("cpu", **scaler_options)
    return acc


@pytest.fixture
def fresh_accelerator_state():
    """The tests after these get accelerate's state afresh (it refuses a second precision)."""
    from accelerate.state import AcceleratorState

    yield
    AcceleratorState._reset_state(True)


def full(tensor):
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def accelerated_step(acc, model, ids, mask, tokens: int):
    """One clipped AdamW step through the accelerator (its backward, clip and prepared optimizer,
    so fp16's GradScaler scales, unscales and checks the gradient): (the unscaled, clipped
    gradient, the weights after), gathered. The layers' matrix products' output dtypes are kept
    in `model.seen_dtypes`."""
    optimizer = acc.prepare_optimizer(torch.optim.AdamW(model.parameters(), lr=1e-2))
    model.seen_dtypes = set()
    hook = model.model.layers[0].mlp.up_proj.register_forward_hook(
        lambda module, args, out: model.seen_dtypes.add(out.dtype))
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    hook.remove()
    model.seen_dtypes.add(("logits", logits.dtype))
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    acc.backward((loss * mask[:, 1:]).sum() / tokens)
    acc.clip_grad_norm_(model.parameters(), CLIP)  # unscales an fp16 gradient first
    grads = {name: full(p.grad).clone() for name, p in model.named_parameters()}
    optimizer.step()
    optimizer.zero_grad()
    return grads, {name: full(p.detach()).clone() for name, p in model.named_parameters()}


def relative(a: dict, b: dict) -> float:
    """The largest relative difference, by norm, over the tensors of `a` and `b`."""
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)) for k in b)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_one_rank_sharded_mixed_precision_step_is_the_prepared_students(
        one_rank_group, torch_single_thread, fresh_accelerator_state, precision):
    """`shard_for_training` runs the sharded student's forward under the accelerator's autocast,
    as `prepare` does the unsharded one's: its layers compute in the low dtype, its logits come
    back in float32, and one step (fp16: through the GradScaler, whose check reads DTensor
    gradients) gives the prepared student's gradient and weights, to 1e-6 relative (the same
    operations on the same values; measured: equal). The fp32 step's gradient is further off by
    the low dtype's rounding (measured 7e-3 in bf16, 9.6e-4 in fp16; asserted above 1e-3 and
    1e-4), so the comparison sees a missing autocast."""
    from arkd_bench.train.sharding import is_sharded, shard_for_training

    tokenizer = tiny_tokenizer()
    ids, mask = batch_of(tokenizer)
    tokens = int(mask[:, 1:].sum())
    low = torch.bfloat16 if precision == "bf16" else torch.float16
    acc = precision_accelerator(precision, init_scale=2.0 ** 10)
    prepared = acc.prepare_model(tiny_llama(tokenizer))
    plain_grads, plain_weights = accelerated_step(acc, prepared, ids, mask, tokens)
    if precision == "fp16":
        acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)  # the same scale for the second model
    sharded = shard_for_training(acc, tiny_llama(tokenizer), processes=1)
    assert is_sharded(sharded)
    grads, weights = accelerated_step(acc, sharded, ids, mask, tokens)
    assert sharded.seen_dtypes == prepared.seen_dtypes == {low, ("logits", torch.float32)}
    assert relative(grads, plain_grads) < 1e-6 and relative(weights, plain_weights) < 1e-6
    if precision == "fp16":
        assert acc.scaler.get_scale() == 2.0 ** 10  # no step skipped
    full_precision = precision_accelerator("no")
    fp32_grads, _ = accelerated_step(full_precision, tiny_llama(tokenizer), ids, mask, tokens)
    assert relative(grads, fp32_grads) > (1e-3 if precision == "bf16" else 1e-4)


def test_one_rank_sharded_fp16_step_that_overflows_is_skipped(one_rank_group, torch_single_thread,
                                                              fresh_accelerator_state):
    """An fp16 step whose scaled gradient overflows leaves the sharded weights as they were and
    halves the scale, as GradScaler does for an unsharded student (its inf check is reduced over
    the shards)."""
    from arkd_bench.train.sharding import shard_for_training

    tokenizer = tiny_tokenizer()
    ids, mask = batch_of(tokenizer)
    acc = precision_accelerator("fp16", init_scale=2.0 ** 100)
    sharded = shard_for_training(acc, tiny_llama(tokenizer), processes=1)
    before = {name: full(p.detach()).clone() for name, p in sharded.named_parameters()}
    grads, after = accelerated_step(acc, sharded, ids, mask, int(mask[:, 1:].sum()))
    assert not all(torch.isfinite(g).all() for g in grads.values())
    assert all(torch.equal(after[name], value) for name, value in before.items())
    assert acc.scaler.get_scale() == 2.0 ** 99



def _fp16_worker(rank: int, port: int, folder: str) -> None:
    """Two fp16 steps of a sharded student through the accelerator's GradScaler: a plain one,
    then one whose gradient is made infinite in rank 0's shard only."""
    from arkd_bench.train.sharding import shard_for_training

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    acc = precision_accelerator("fp16", init_scale=2.0 ** 10)
    tokenizer = tiny_tokenizer()
    model = shard_for_training(acc, tiny_llama(tokenizer))
    optimizer = acc.prepare_optimizer(torch.optim.AdamW(model.parameters(), lr=1e-2))
    ids, mask = batch_of(tokenizer, rank)
    tokens = int(batch_of(tokenizer)[1][:, 1:].sum())
    first = next(model.parameters())
    moved = []
    for overflow in (False, True):
        before = first.to_local().clone()
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        acc.backward((loss * mask[:, 1:]).sum() * (WORLD / tokens))
        if overflow and rank == 0:
            first.grad.to_local().view(-1)[0] = float("inf")
        optimizer.step()
        optimizer.zero_grad()
        moved.append(not torch.equal(first.to_local(), before))
    torch.save({"moved": moved, "scale": acc.scaler.get_scale()}, f"{folder}/fp16_rank{rank}.pt")


@pytest.mark.slow  # two spawned processes: about a minute on a busy 2-core machine
def test_two_process_fp16_step_overflowing_in_one_shard_is_skipped_by_both(tmp_path, torch_single_thread):
    """fp16 under train.sharding: fsdp uses accelerate's plain GradScaler, whose inf check runs
    on DTensor gradients and is reduced over the shards: an inf in one process's shard only makes
    both processes skip the step and halve their scale, so the shards never drift apart."""
    run_two_processes(str(tmp_path), worker=_fp16_worker)
    results = [torch.load(tmp_path / f"fp16_rank{r}.pt") for r in range(WORLD)]
    assert [r["moved"] for r in results] == [[True, False]] * WORLD
    assert [r["scale"] for r in results] == [2.0 ** 9] * WORLD


def test_one_rank_sharded_state_saved_and_loaded_trains_on_as_the_uninterrupted_model(
        one_rank_group, torch_single_thread, tmp_path):
    """A sharded student and its AdamW state saved after one step (torch.distributed.checkpoint)
    and loaded into a fresh sharded student and optimizer: the second step gives the weights and
    the optimizer state the uninterrupted model has, exactly. A fresh model's second step lands
    elsewhere, so the load is what makes them equal."""
    from arkd_bench.train.sharding import full_state_dict, load_sharded_state, save_sharded_state, shard_student

    tokenizer = tiny_tokenizer()
    ids, mask = batch_of(tokenizer)
    tokens = int(mask[:, 1:].sum())

    def sharded_with_optimizer(seed_offset: int = 0):
        model = shard_student(tiny_llama(tokenizer), torch.device("cpu"), 1)
        with torch.no_grad():  # a fresh model that differs from the trained one
            for p in model.parameters():
                p.add_(seed_offset * 0.01)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    def step(model, optimizer):
        train_step(model, optimizer, ids, mask, tokens, 1, torch.nn.utils.clip_grad_norm_)

    model, optimizer = sharded_with_optimizer()
    step(model, optimizer)
    save_sharded_state(model, optimizer, tmp_path / "state")
    step(model, optimizer)
    resumed, resumed_optimizer = sharded_with_optimizer(seed_offset=1)
    load_sharded_state(resumed, resumed_optimizer, tmp_path / "state")
    step(resumed, resumed_optimizer)
    unloaded, unloaded_optimizer = sharded_with_optimizer(seed_offset=1)
    step(unloaded, unloaded_optimizer)
    step(unloaded, unloaded_optimizer)

    expected, got = full_state_dict(model), full_state_dict(resumed)
    assert set(got) == set(expected)
    assert all(torch.equal(got[name], value) for name, value in expected.items())
    assert not torch.equal(full_state_dict(unloaded)["lm_head.weight"], expected["lm_head.weight"])

    def adam_state(net, opt):
        return {name: (full(opt.state[p]["exp_avg_sq"]), float(opt.state[p]["step"]))
                for name, p in net.named_parameters()}

    expected_state, resumed_state = adam_state(model, optimizer), adam_state(resumed, resumed_optimizer)
    assert all(torch.equal(resumed_state[name][0], moments) and resumed_state[name][1] == steps == 2
               for name, (moments, steps) in expected_state.items())

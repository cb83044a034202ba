"""Stored teacher outputs cross to the device as stored (float16 rows, top-k values and int32
ids, token ids) and are laid out there: the same tensors, bit for bit, as the float32 batches
built on the host before, for far fewer bytes."""
import math

import pytest
import torch

from arkd_bench.divergences.topk import TopKLogProbs, TopKRows
from arkd_bench.divergences.chunk import Scratch
from arkd_bench.teacher.disk import StoredTeacherOutputs
from arkd_bench.teacher.memory import TeacherOutputs
from arkd_bench.teacher.targets import OFF_TARGET_LOGIT, TokenTargets
from arkd_bench.testing import tiny_gpt2

META = torch.device("meta")


def host_batch(stored, indices, width):
    """The float32 batch as it was built on the host: zeros, each item's dense rows at its positions."""
    out = torch.zeros(len(indices), width, stored.vocab_size)
    for row, index in enumerate(indices.tolist()):
        positions = torch.tensor(stored.positions[index], dtype=torch.long)
        if positions.numel():
            out[row, positions] = stored.rows(index)
    return out


def width_of(items, indices):
    return max(len(items[i]["input_ids"]) for i in indices.tolist())


@pytest.mark.parametrize("layout", ["dense", "topk"])
def test_stored_batches_equal_the_host_built_ones_bit_for_bit(teacher_items, tmp_path, layout):
    tokenizer, teacher, items = teacher_items
    vocab = len(tokenizer)
    StoredTeacherOutputs.write(tmp_path, layout, teacher, items, tokenizer.pad_token_id, vocab, k=8)
    stored = StoredTeacherOutputs(tmp_path, layout, vocab)
    indices = torch.tensor([3, 0, 5, 1])
    width = width_of(items, indices)
    got = stored.batch(indices, width, device="cpu")
    if layout == "topk":
        assert isinstance(got, TopKLogProbs) and got.shape == (4, width, vocab)
        # the pass's chunk expansion gives the same rows as the whole dense one
        rows = TopKRows(got).take(torch.tensor([0, 7, 40, 41]), Scratch(), "t")
        assert torch.equal(rows, got.dense().view(-1, vocab)[[0, 7, 40, 41]])
        got = got.dense()
    assert got.dtype == torch.float32 and torch.equal(got, host_batch(stored, indices, width))


def test_what_crosses_to_the_device_is_the_stored_bytes(teacher_items, tmp_path):
    """float16 rows of the response positions (not float32 rows of every position) for the dense
    layout; k float32 values and k int32 ids for top-k."""
    tokenizer, teacher, items = teacher_items
    vocab, k = len(tokenizer), 8
    indices = torch.arange(4)
    width = width_of(items, indices)
    response_rows = sum(len(stored_positions) for stored_positions in
                        [[t for t in range(len(items[i]["labels"]) - 1) if items[i]["labels"][t + 1] != -100]
                         for i in range(4)])
    index_bytes = 2 * 8 * response_rows  # (batch row, position) of each stored row, int64
    sent = {}
    for layout, per_row in (("dense", 2 * vocab), ("topk", 8 * k)):
        folder = tmp_path / layout
        folder.mkdir()
        StoredTeacherOutputs.write(folder, layout, teacher, items, tokenizer.pad_token_id, vocab, k=k)
        stored = StoredTeacherOutputs(folder, layout, vocab)
        stored.batch(indices, width, device=META)
        assert stored.sent_bytes == response_rows * per_row + index_bytes
        sent[layout] = stored.sent_bytes
    assert sent["topk"] < sent["dense"] < 4 * width * len(indices) * vocab / 2  # host-built float32: 4 B L V


def test_memory_and_token_targets_lay_out_their_batches_on_the_device(teacher_items):
    tokenizer, teacher, items = teacher_items
    vocab = len(tokenizer)
    indices = torch.tensor([2, 0, 4])
    width = width_of(items, indices)
    memory = TeacherOutputs.compute(teacher, items[:5], tokenizer.pad_token_id)
    expected = torch.zeros(3, width, vocab)
    for row, index in enumerate(indices.tolist()):
        expected[row, : memory.rows[index].shape[0]] = memory.rows[index]
    assert torch.equal(memory.batch(indices, width), expected)
    assert memory.sent_bytes == 4 * vocab * sum(memory.rows[i].shape[0] for i in indices.tolist())
    targets = TokenTargets(items, vocab)
    onehot = torch.full((3, width, vocab), OFF_TARGET_LOGIT)
    for row, index in enumerate(indices.tolist()):
        ids = items[index]["input_ids"][1:width]
        onehot[row, torch.arange(len(ids)), torch.tensor(ids)] = 0.0
    assert torch.equal(targets.batch(indices, width), onehot)
    assert targets.sent_bytes < 100 * width  # ids only, no [B, L, V] tensor
    assert targets.batch(indices, width, device=META).device == META


class DenseTopK(StoredTeacherOutputs):
    """The top-k store answered as the dense expansion, as every batch was before."""

    def batch(self, indices, width: int, device=None):
        return super().batch(indices, width, device).dense()


def train_losses(source, tokenizer, items, plugins, objective, accelerator, **train) -> list[float]:
    from arkd_bench.recipe.schema import MethodSpec, TrainSpec
    from arkd_bench.train.distill import Distiller

    weighting = {"name": "fixed", "options": {"weights": [1.0 / len(objective)] * len(objective)}}
    method = MethodSpec.model_validate({"name": "m", "objective": objective, "weighting": weighting})
    spec = TrainSpec.model_validate({"steps": 3, "batch_size": 4, "max_length": 48, "log_every": 1, "lr": 0.02,
                                     **train})
    d = Distiller(student=tiny_gpt2(tokenizer, seed=3), teacher=source, tokenizer=tokenizer, train_items=items,
                  method=method, train=spec, plugins=plugins, seed=0, accelerator=accelerator)
    return [r["loss"] for r in d.run().log]


@pytest.mark.parametrize("objective", [["fkl"], ["fkl", "rkl"]])
def test_training_on_a_sparse_top_k_teacher_is_training_on_its_dense_expansion(teacher_items, tmp_path, builtin_plugins,
                                                                              objective):
    """FKL alone is computed on the support: equal up to float32 rounding of the student's
    log-probs (about 1e-7 of |log q| ~ 6 per token; the losses here are about 0.01, so the
    tolerance is absolute, 5e-7); with RKL beside it each chunk is expanded in the pass (the same
    numbers, bit for bit)."""
    from accelerate import Accelerator

    tokenizer, teacher, items = teacher_items
    vocab = len(tokenizer)
    StoredTeacherOutputs.write(tmp_path, "topk", teacher, items, tokenizer.pad_token_id, vocab, k=8)
    sparse, dense = (train_losses(source, tokenizer, items, builtin_plugins, objective, Accelerator(cpu=True))
                     for source in (StoredTeacherOutputs(tmp_path, "topk", vocab), DenseTopK(tmp_path, "topk", vocab)))
    assert len(sparse) == 3
    if objective == ["fkl"]:
        assert sparse == pytest.approx(dense, rel=0, abs=5e-7) and sparse != dense
    else:
        assert sparse == dense


def test_a_sparse_top_k_teacher_through_a_fused_head_under_bf16(teacher_items, tmp_path, builtin_plugins):
    """bf16 autocast, the LM head inside the pass and FKL on the top-k support: the first
    step's loss is the dense expansion's up to the pass's float32 rounding. Later steps are
    only checked to train: the gradients are rounded to bf16 in the head's and the body's
    products, so a float32 rounding difference can move an entry by one bf16 step (2^-8), and
    Adam's first update is about lr * sign(gradient), so a gradient entry near zero that changes
    sign moves its weight by 2 lr (measured: 1.7% apart on the third step's loss)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    tokenizer, teacher, items = teacher_items
    vocab = len(tokenizer)
    StoredTeacherOutputs.write(tmp_path, "topk", teacher, items, tokenizer.pad_token_id, vocab, k=8)
    losses = []
    try:
        for source in (StoredTeacherOutputs(tmp_path, "topk", vocab), DenseTopK(tmp_path, "topk", vocab)):
            AcceleratorState._reset_state(True)
            losses.append(train_losses(source, tokenizer, items, builtin_plugins, ["fkl"],
                                       Accelerator(cpu=True, mixed_precision="bf16"), fused_head=True))
    finally:
        AcceleratorState._reset_state(True)
    sparse, dense = losses
    assert len(sparse) == len(dense) == 3 and sparse[0] == pytest.approx(dense[0], rel=0, abs=5e-7)
    assert all(math.isfinite(v) for v in sparse + dense)

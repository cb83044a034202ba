"""Teacher outputs stored on disk: float16 log-probs (exact but for rounding) and the top-k
approximation, against the in-memory float32 logits they stand for."""
import pytest
import torch

from arkd_bench import get_divergence
from arkd_bench.divergences import divergence_pass
from arkd_bench.teacher.disk import StoredTeacherOutputs, topk_to_dense
from arkd_bench.teacher.items import response_positions
from arkd_bench.teacher.memory import TeacherOutputs


def batch_of(items, pad):
    from arkd_bench.data.collate import collate_for_training

    batch = collate_for_training(items, pad)
    return batch, torch.arange(len(items))


def test_disk_cache_matches_the_teachers_log_probs_where_the_loss_reads(teacher_items, tmp_path, torch_single_thread):
    tokenizer, teacher, items = teacher_items
    vocab = len(tokenizer)
    StoredTeacherOutputs.write(tmp_path, "dense", teacher, items, tokenizer.pad_token_id, vocab)
    stored = StoredTeacherOutputs(tmp_path, "dense", vocab)
    memory = TeacherOutputs.compute(teacher, items, tokenizer.pad_token_id)
    batch, index = batch_of(items, tokenizer.pad_token_id)
    width = batch["input_ids"].shape[1]
    exact, disk = memory.batch(index, width), stored.batch(index, width)
    mask = torch.zeros(exact.shape[:2], dtype=torch.bool)
    for row, item in enumerate(items):
        mask[row, response_positions(item)] = True
    assert mask.any() and not mask.all()
    assert (disk[~mask] == 0).all()  # positions the loss never reads are not stored
    diff = (disk[mask] - torch.log_softmax(exact[mask], -1)).abs().max()
    assert 0 < diff < 1e-2  # float16 rounding of log-probs, and nothing more
    student = torch.randn_like(exact)
    terms = {"fkl": get_divergence("fkl"), "rkl": get_divergence("rkl")}
    a = divergence_pass(student_logits=student, teacher_logits=exact, mask=mask, terms=terms).values
    b = divergence_pass(student_logits=student, teacher_logits=disk, mask=mask, terms=terms).values
    torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-3)


def test_topk_keeps_the_top_entries_exactly_and_the_rest_of_the_mass(teacher_items, tmp_path):
    tokenizer, teacher, items = teacher_items
    vocab = len(tokenizer)
    StoredTeacherOutputs.write(tmp_path, "topk", teacher, items, tokenizer.pad_token_id, vocab, k=8)
    stored = StoredTeacherOutputs(tmp_path, "topk", vocab)
    memory = TeacherOutputs.compute(teacher, items, tokenizer.pad_token_id)
    exact = torch.log_softmax(memory.rows[0][response_positions(items[0])], -1)
    approx = stored.rows(0)
    top = exact.topk(8, -1)
    assert torch.equal(approx.gather(-1, top.indices), top.values)
    torch.testing.assert_close(approx.exp().sum(-1), torch.ones(approx.shape[0]))
    assert not torch.allclose(approx, exact)  # an approximation: the tail is flattened
    assert "APPROXIMATE" in stored.description and "exact" in memory.description


def test_topk_with_the_whole_vocabulary_is_exact():
    logp = torch.log_softmax(torch.randn(3, 10) * 3, -1)
    top = logp.topk(10, -1)
    torch.testing.assert_close(topk_to_dense(top.values, top.indices, 10), logp)

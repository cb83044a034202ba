"""A top-k teacher kept sparse into the divergence pass: FKL computed on its support equals an
independent float64 numpy computation of the dense expansion (values and gradients); every other
term expands the teacher chunk by chunk on the device, bit for bit the dense expansion's result."""
import numpy as np
import pytest
import torch

from arkd_bench.divergences import FKL, JSD, RKL, TVD, LinearHead, divergence_pass
from arkd_bench.divergences.topk import TopKLogProbs, TopKRows

from _divergences_ref import log_softmax

V, K = 37, 6


def sparse_teacher(seed: int = 0, vocab: int = V, k: int = K) -> TopKLogProbs:
    g = torch.Generator().manual_seed(seed)
    logp = torch.log_softmax(torch.randn(2, 5, vocab, generator=g) * 2.5, -1)
    top = logp.topk(k, -1)
    present = torch.ones(2, 5, dtype=torch.bool)
    present[1, 3:] = False  # padding: nothing stored there
    return TopKLogProbs(top.values, top.indices, present, vocab)


def reference_teacher(top: TopKLogProbs) -> np.ndarray:
    """The dense expansion in float64, from the formula: kept entries as stored, the rest of the
    mass spread evenly over the other V - k entries."""
    values, ids = top.values.double().numpy(), top.indices.numpy()
    tail = np.maximum(1.0 - np.exp(values).sum(-1, keepdims=True), 1e-30)
    out = np.broadcast_to(np.log(tail / max(top.vocab_size - values.shape[-1], 1)), (*values.shape[:-1], top.vocab_size)).copy()
    np.put_along_axis(out, ids, values, -1)
    return np.where(top.present.numpy()[..., None], out, 0.0)


def student_logits(seed: int = 1, vocab: int = V) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 5, vocab, generator=g) * 1.5).requires_grad_(True)


MASK = torch.tensor([[1, 1, 1, 0, 1], [0, 1, 1, 0, 0]], dtype=torch.bool)


def run(student, teacher, terms, temperature=1.0, features=False, chunk_size=3, lm_head=None):
    out = divergence_pass(student_logits=student, teacher_logits=teacher, mask=MASK, terms=terms,
                          temperature=temperature, chunk_size=chunk_size, features=features, lm_head=lm_head)
    weights = torch.arange(1.0, 1.0 + out.values.shape[0]).view(-1, 1, 1)
    (grad,) = torch.autograd.grad((out.values * weights).sum(), student)
    return out, grad


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_fkl_on_the_support_equals_the_dense_expansion_computed_in_numpy(temperature):
    top, s = sparse_teacher(), student_logits()
    out, grad = run(s, top, {"fkl": FKL()}, temperature)
    lp = log_softmax(reference_teacher(top), temperature)  # the pass renormalises p^(1/T)
    lq = log_softmax(s.detach().numpy(), temperature)
    p, q = np.exp(lp), np.exp(lq)
    expected = np.where(MASK.numpy(), (p * (lp - lq)).sum(-1), 0.0)
    np.testing.assert_allclose(out.values[0].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    expected_grad = np.where(MASK.numpy()[..., None], (q - p) / temperature, 0.0)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-5, atol=1e-6)


def test_fkl_on_the_support_never_expands_a_teacher_row(monkeypatch):
    def expanded(*args, **kwargs):
        raise AssertionError("a teacher row was expanded")

    monkeypatch.setattr(TopKRows, "take", expanded)
    monkeypatch.setattr(TopKLogProbs, "dense", expanded)
    top, s = sparse_teacher(), student_logits()
    out, grad = run(s, top, {"fkl": FKL()})
    dense_out, dense_grad = run(student_logits(), top_dense := _dense(top), {"fkl": FKL()})
    torch.testing.assert_close(out.values, dense_out.values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, dense_grad, rtol=1e-5, atol=1e-6)
    assert top_dense.shape == top.shape


def _dense(top: TopKLogProbs) -> torch.Tensor:
    from arkd_bench.divergences.topk import topk_to_dense

    return topk_to_dense(top.values, top.indices, top.vocab_size).masked_fill(~top.present.unsqueeze(-1), 0.0)


@pytest.mark.parametrize("features", [False, True])
def test_other_terms_expand_chunk_by_chunk_bit_for_bit(features):
    """RKL, TVD and JSD (and FKL beside them, or with features) need the full teacher rows: each
    chunk is expanded on the device, and values, features and gradients are those of the dense
    expansion, exactly."""
    terms = {"fkl": FKL(), "rkl": RKL(), "tvd": TVD(), "jsd": JSD()}
    top = sparse_teacher(2)
    out, grad = run(student_logits(3), top, terms, features=features)
    dense_out, dense_grad = run(student_logits(3), top.dense(), terms, features=features)
    assert torch.equal(out.values, dense_out.values) and torch.equal(grad, dense_grad)
    if features:
        assert torch.equal(out.features.g_head, dense_out.features.g_head)


def test_fkl_on_the_support_through_a_fused_head():
    """With the LM head inside the pass (fused_head), the support path gives the dense
    expansion's values and hidden-state and head gradients."""
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(2, 5, 8, generator=g).requires_grad_(True)
    weight = torch.randn(V, 8, generator=g).requires_grad_(True)
    top = sparse_teacher(5)
    results = []
    for teacher in (top, top.dense()):
        out = divergence_pass(student_logits=hidden, teacher_logits=teacher, mask=MASK, terms={"fkl": FKL()},
                              chunk_size=4, features=False, lm_head=LinearHead(weight))
        results.append((out.values, *torch.autograd.grad(out.values.sum(), (hidden, weight))))
    for sparse, dense in zip(*results):
        torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)


def test_a_whole_vocabulary_top_k_has_no_tail():
    top, s = sparse_teacher(6, vocab=9, k=9), student_logits(7, vocab=9)
    out, _ = run(s, top, {"fkl": FKL()})
    lp, lq = log_softmax(reference_teacher(top)), log_softmax(s.detach().numpy())
    expected = np.where(MASK.numpy(), (np.exp(lp) * (lp - lq)).sum(-1), 0.0)
    np.testing.assert_allclose(out.values[0].detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_top_k_teacher_is_indexed_along_its_tokens_only():
    top = sparse_teacher()
    assert top[:, :-1, :].shape == (2, 4, V)
    with pytest.raises(IndexError, match="token axes only"):
        top[..., :10]


class DoubledFKL(FKL):
    """An FKL subclass that changes its value: it inherits `exact_on_support`, not the support path."""

    name = "doubled_fkl"

    def chunk_value(self, chunk):
        return 2 * chunk.fkl


def test_a_subclass_that_changes_the_chunk_methods_expands_the_teacher():
    from arkd_bench.divergences.topk import exact_on_support

    assert exact_on_support(FKL()) and not exact_on_support(DoubledFKL()) and not exact_on_support(RKL())
    top = sparse_teacher(8)
    out, _ = run(student_logits(9), top, {"d": DoubledFKL()})
    dense_out, _ = run(student_logits(9), top.dense(), {"d": DoubledFKL()})
    assert torch.equal(out.values, dense_out.values)

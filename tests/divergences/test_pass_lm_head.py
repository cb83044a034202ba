"""The fused pass with the LM head inside (`lm_head=`): the same values, features and
gradients as applying the head first and passing the dense logits, without ever holding the
N x V student logits."""

import pytest
import torch

from arkd_bench.divergences import BUILTIN_DIVERGENCES, FKL, RKL, LinearHead, divergence_pass

VOCAB, HIDDEN = 37, 6


def _case(seed=0, shape=(3, 7), bias=True, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*shape, HIDDEN, generator=g, dtype=dtype)
    weight = torch.randn(VOCAB, HIDDEN, generator=g, dtype=dtype)
    b = torch.randn(VOCAB, generator=g, dtype=dtype) if bias else None
    teacher = 2 * torch.randn(*shape, VOCAB, generator=g, dtype=dtype)
    mask = torch.rand(shape, generator=g) > 0.3
    return hidden, weight, b, teacher, mask


def _run(hidden, weight, bias, teacher, mask, terms, fused_head, **kw):
    h = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    b = None if bias is None else bias.clone().requires_grad_(True)
    if fused_head:
        out = divergence_pass(student_logits=h, teacher_logits=teacher, mask=mask, terms=terms,
                              lm_head=LinearHead(w, b), **kw)
    else:
        logits = h @ w.t() + (0 if b is None else b)
        out = divergence_pass(student_logits=logits, teacher_logits=teacher, mask=mask, terms=terms, **kw)
    weights = torch.linspace(0.3, 1.1, len(terms), dtype=out.values.dtype).view(-1, *[1] * mask.dim())
    (out.values * weights).sum().backward()
    return out, h.grad, w.grad, None if b is None else b.grad


@pytest.mark.parametrize("temperature", [1.0, 1.7])
@pytest.mark.parametrize("bias", [False, True])
def test_head_inside_the_pass_equals_dense_logits(temperature, bias):
    terms = {name: cls() for name, cls in BUILTIN_DIVERGENCES.items() if name != "todi"}
    case = _case(bias=bias)
    labels = torch.randint(0, VOCAB, case[4].shape, generator=torch.Generator().manual_seed(5))
    kw = dict(temperature=temperature, chunk_size=4, target_ids=labels)
    fused = _run(*case, terms, True, **kw)
    dense = _run(*case, terms, False, **kw)
    torch.testing.assert_close(fused[0].values, dense[0].values, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fused[0].label_logp, dense[0].label_logp, rtol=1e-10, atol=1e-12)
    for name in ("fkl", "rkl", "teacher_entropy", "student_entropy", "g_head", "g_tail", "head_size"):
        torch.testing.assert_close(getattr(fused[0].features, name), getattr(dense[0].features, name))
    for got, want in zip(fused[1:], dense[1:]):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
    hidden_grad = fused[1]
    assert torch.count_nonzero(hidden_grad[~case[4]]) == 0  # masked rows get no gradient
    assert torch.count_nonzero(hidden_grad[case[4]]) > 0


def test_head_inside_the_pass_on_sliced_hidden_states_and_float32():
    """The next-token slice `hidden[:, :-1]` (not contiguous) in float32, as training passes it."""
    hidden, weight, bias, teacher, mask = _case(shape=(2, 9), dtype=torch.float32)
    terms = {"fkl": FKL(), "rkl": RKL()}
    fused = _run(hidden[:, :-1], weight, bias, teacher[:, :-1], mask[:, :-1], terms, True, chunk_size=3)
    dense = _run(hidden[:, :-1], weight, bias, teacher[:, :-1], mask[:, :-1], terms, False, chunk_size=3)
    torch.testing.assert_close(fused[0].values, dense[0].values, rtol=1e-5, atol=1e-6)
    for got, want in zip(fused[1:], dense[1:]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_shapes_are_checked():
    hidden, weight, _, teacher, mask = _case()
    with pytest.raises(ValueError, match="vocabularies must agree"):
        divergence_pass(student_logits=hidden, teacher_logits=teacher[..., :-1], mask=mask, terms={"fkl": FKL()},
                        lm_head=LinearHead(weight))
    with pytest.raises(ValueError, match="hidden size 6 != the LM head's input size 5"):
        divergence_pass(student_logits=hidden, teacher_logits=teacher, mask=mask, terms={"fkl": FKL()},
                        lm_head=LinearHead(weight[:, :5]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_low_precision_heads_gradient_is_summed_over_chunks_in_float32(dtype):
    """A head stored in bfloat16/float16, many chunks: the weight's and bias's gradients are summed
    over chunks in float32 and rounded once, so they are as close to float64 as the dense path's
    (one matrix product, rounded once). Summed chunk by chunk in bfloat16 they were twice as far."""
    g = torch.Generator().manual_seed(0)
    n, hidden_size, vocab = 256, 16, 512
    hidden = torch.randn(n, hidden_size, generator=g)
    weight = torch.randn(vocab, hidden_size, generator=g) / hidden_size ** 0.5
    bias = 0.1 * torch.randn(vocab, generator=g)
    teacher = 2 * torch.randn(n, vocab, generator=g)
    terms = {"fkl": FKL(), "rkl": RKL()}

    def grads(dtype, fused):
        h, w, b = (t.to(dtype, copy=True).requires_grad_(True) for t in (hidden, weight, bias))
        if fused:
            out = divergence_pass(student_logits=h, teacher_logits=teacher, terms=terms, chunk_size=4,
                                  lm_head=LinearHead(w, b))
        else:
            out = divergence_pass(student_logits=torch.addmm(b, h, w.t()), teacher_logits=teacher, terms=terms,
                                  chunk_size=4)
        out.values.sum().backward()
        return w.grad, b.grad

    exact = grads(torch.float64, False)
    dense, fused = grads(dtype, False), grads(dtype, True)
    assert fused[0].dtype == fused[1].dtype == dtype
    for got, want, ref in zip(fused, dense, exact):
        error = float((got.double() - ref).norm() / ref.norm())
        dense_error = float((want.double() - ref).norm() / ref.norm())
        assert error < 1.2 * dense_error, (error, dense_error)  # bfloat16 before: 9.4e-3 vs 4.2e-3


def test_the_head_runs_in_its_compute_dtype():
    """`LinearHead(dtype=...)`: float32 weights used in bfloat16 (as autocast runs nn.Linear), the
    logits those of the dense head under autocast, the gradients in the weights' float32."""
    hidden, weight, bias, teacher, mask = _case(shape=(4, 5), dtype=torch.float32)
    terms = {"fkl": FKL()}
    h, w, b = (t.clone().requires_grad_(True) for t in (hidden, weight, bias))
    fused = divergence_pass(student_logits=h, teacher_logits=teacher, mask=mask, terms=terms, chunk_size=3,
                            lm_head=LinearHead(w, b, dtype=torch.bfloat16))
    fused.values.sum().backward()
    h2, w2, b2 = (t.clone().requires_grad_(True) for t in (hidden, weight, bias))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.nn.functional.linear(h2, w2, b2)
    assert logits.dtype == torch.bfloat16
    dense = divergence_pass(student_logits=logits.float(), teacher_logits=teacher, mask=mask, terms=terms, chunk_size=3)
    dense.values.sum().backward()
    torch.testing.assert_close(fused.values, dense.values, rtol=1e-6, atol=1e-7)
    assert w.grad.dtype == b.grad.dtype == h.grad.dtype == torch.float32
    for got, want in ((h.grad, h2.grad), (w.grad, w2.grad), (b.grad, b2.grad)):
        assert float((got - want).norm() / want.norm()) < 1e-2  # bfloat16 rounding, chunk by chunk vs once

"""The fused, chunked pass: equal to plain autograd, mask- and chunk-invariant, NaN-free."""

import numpy as np
import pytest
import torch
from _divergences_ref import CASES, akl, case_id, entropy, fkl, log_softmax, make_logits, rkl, torch_rows

from arkd_bench.divergences import (
    BUILTIN_DIVERGENCES,
    FKL,
    JSD,
    RKL,
    Divergence,
    StepFeatures,
    divergence_pass,
)


def _inputs(shape=(3, 5), vocab=29, kind="random", seed=0, requires_grad=True):
    n = int(np.prod(shape))
    t = torch_rows(make_logits(kind, n, vocab, seed)).view(*shape, vocab)
    s = torch_rows(make_logits(kind, n, vocab, seed + 1)).view(*shape, vocab)
    return s.requires_grad_(requires_grad), t


def _all_terms():
    return {case_id(c): BUILTIN_DIVERGENCES[c[0]](**c[1]) for c in CASES}


def _unfused(terms, student, teacher, mask, temperature=1.0):
    """Plain autograd over the full tensors: per-term per_token on full log-softmaxes."""
    vocab = student.shape[-1]
    ls = torch.log_softmax(student.float() / temperature, -1).reshape(-1, vocab)
    lt = torch.log_softmax(teacher.float() / temperature, -1).reshape(-1, vocab)
    vals = torch.stack([d.per_token(lt, ls).view(student.shape[:-1]) for d in terms.values()])
    return torch.where(mask, vals, 0.0) if mask is not None else vals


@pytest.mark.parametrize("temperature", [1.0, 1.7])
@pytest.mark.parametrize("masked", [False, True])
def test_values_and_gradients_equal_unfused_autograd(temperature, masked):
    terms = _all_terms()
    student, teacher = _inputs(kind="mixed")
    mask = torch.rand(student.shape[:-1], generator=torch.Generator().manual_seed(1)) > 0.3 if masked else None
    weights = torch.randn(len(terms), *student.shape[:-1], generator=torch.Generator().manual_seed(2))

    out = divergence_pass(student_logits=student, teacher_logits=teacher, mask=mask, terms=terms,
                          temperature=temperature, chunk_size=4)
    (grad_fused,) = torch.autograd.grad((out.values * weights).sum(), student)
    ref = _unfused(terms, student, teacher, mask, temperature)
    (grad_ref,) = torch.autograd.grad((ref * weights).sum(), student)

    torch.testing.assert_close(out.values, ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_fused, grad_ref, rtol=1e-4, atol=1e-6)
    assert torch.isfinite(grad_fused).all()


def test_extreme_logits_stay_finite():
    """Logits of magnitude 1e3: many probabilities underflow to exactly 0 without any -inf."""
    student, teacher = _inputs(kind="peaked")
    student = (student.detach() * 1e3).requires_grad_(True)
    out = divergence_pass(student_logits=student, teacher_logits=teacher * 1e3, terms=_all_terms())
    (g,) = torch.autograd.grad(out.values.sum(), student)
    assert torch.isfinite(out.values).all() and torch.isfinite(g).all()
    for name in StepFeatures.COMPUTED:
        assert torch.isfinite(getattr(out.features, name)).all()


def test_third_party_divergence_uses_local_autograd():
    class Hellinger(Divergence):
        name = "hellinger"

        def per_token(self, t_logp, s_logp):
            return ((t_logp / 2).exp() - (s_logp / 2).exp()).square().sum(-1)

    terms = {"h": Hellinger(), "f": FKL()}
    student, teacher = _inputs()
    out = divergence_pass(student_logits=student, teacher_logits=teacher, terms=terms, chunk_size=2)
    (g,) = torch.autograd.grad(out.values.sum(), student)
    (g_ref,) = torch.autograd.grad(_unfused(terms, student, teacher, None).sum(), student)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", [n for n in BUILTIN_DIVERGENCES if n != "todi"])
def test_analytic_gradient_passes_gradcheck(name):
    """float64 finite differences through the fused backward (todi's detached weight makes its
    gradient deliberately differ from the value's derivative, so it is checked above instead)."""
    student, teacher = _inputs(shape=(2, 3), vocab=7, seed=3)
    student = student.detach().double().requires_grad_(True)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    for opts in [{}, {"temperature": 1.5}]:
        div = BUILTIN_DIVERGENCES[name](**opts)
        fn = lambda s: div(student_logits=s, teacher_logits=teacher.double(), mask=mask)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (student,), eps=1e-6, atol=1e-5)


def test_chunk_size_does_not_change_anything():
    terms = {"f": FKL(), "r": RKL(), "j": JSD()}
    student, teacher = _inputs(shape=(13,), vocab=90, kind="mixed")
    mask = torch.ones(13, dtype=torch.bool)
    mask[[2, 3, 9]] = False  # non-contiguous selection
    results = []
    for chunk in (1, 2, 5, 64):
        out = divergence_pass(student_logits=student, teacher_logits=teacher, mask=mask, terms=terms, chunk_size=chunk)
        (g,) = torch.autograd.grad(out.values.sum(), student)
        results.append((out.values.detach(), torch.stack([getattr(out.features, n) for n in StepFeatures.COMPUTED]), g))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_masked_tokens_are_never_read():
    terms = _all_terms()
    student, teacher = _inputs(kind="peaked")
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)
    clean = divergence_pass(student_logits=student, teacher_logits=teacher, mask=mask, terms=terms)
    (g_clean,) = torch.autograd.grad(clean.values.sum(), student)

    garbage_s, garbage_t = student.detach().clone(), teacher.clone()
    garbage_s[~mask] = float("nan")
    garbage_t[~mask] = -float("inf")
    garbage_s.requires_grad_(True)
    dirty = divergence_pass(student_logits=garbage_s, teacher_logits=garbage_t, mask=mask, terms=terms)
    (g_dirty,) = torch.autograd.grad(dirty.values.sum(), garbage_s)

    torch.testing.assert_close(dirty.values, clean.values)
    torch.testing.assert_close(g_dirty, g_clean)
    assert (dirty.values[:, ~mask] == 0).all() and (g_dirty[~mask] == 0).all()
    for name in StepFeatures.COMPUTED:
        feat = getattr(dirty.features, name)
        assert torch.isfinite(feat).all() and (feat[~mask] == 0).all()


def test_fully_masked_batch_gives_zeros_and_zero_gradient():
    student, teacher = _inputs()
    mask = torch.zeros(student.shape[:-1], dtype=torch.bool)
    out = divergence_pass(student_logits=student, teacher_logits=teacher, mask=mask, terms=_all_terms())
    loss = out.values.sum()
    (g,) = torch.autograd.grad(loss, student)
    assert loss.item() == 0.0 and (out.values == 0).all()
    assert torch.isfinite(g).all() and (g == 0).all()
    assert all(v == 0.0 for v in out.features.to_batch_dict().values())
    single = FKL()(student_logits=student, teacher_logits=teacher, mask=mask)
    assert (single == 0).all()


def test_shared_neg_inf_columns_keep_gradients_finite():
    student, teacher = _inputs(kind="random")
    student, teacher = student.detach().clone(), teacher.clone()
    student[..., [0, 7, 8]] = -float("inf")
    teacher[..., [0, 7, 8]] = -float("inf")
    student.requires_grad_(True)
    out = divergence_pass(student_logits=student, teacher_logits=teacher, terms=_all_terms())
    (g,) = torch.autograd.grad(out.values.sum(), student)
    assert torch.isfinite(out.values).all() and torch.isfinite(g).all()
    assert (g[..., [0, 7, 8]] == 0).all()


def test_one_sided_neg_inf_gradients_finite_where_values_are():
    for side in ("teacher", "student"):
        student, teacher = _inputs(kind="random")
        student, teacher = student.detach().clone(), teacher.clone()
        (teacher if side == "teacher" else student)[..., [3, 4]] = -float("inf")
        student.requires_grad_(True)
        for label, div in _all_terms().items():
            value = div(student_logits=student, teacher_logits=teacher)
            assert not torch.isnan(value).any(), label
            if torch.isfinite(value).all():
                (g,) = torch.autograd.grad(value.sum(), student)
                assert torch.isfinite(g).all(), (side, label)


def test_features_match_numpy():
    student, teacher = _inputs(shape=(40,), vocab=300, kind="mixed", requires_grad=False)
    mask = torch.ones(40, dtype=torch.bool)
    mask[5] = False
    f = divergence_pass(student_logits=student, teacher_logits=teacher, mask=mask, terms={"f": FKL()}, mu=0.6).features
    p = np.exp(log_softmax(teacher.numpy()))
    q = np.exp(log_softmax(student.numpy()))
    g_head, g_tail, size = akl(p, q, 0.6)
    want = {
        "fkl": fkl(p, q), "rkl": rkl(p, q), "teacher_entropy": entropy(p), "student_entropy": entropy(q),
        "top1_agree": (p.argmax(-1) == q.argmax(-1)).astype(float), "g_head": g_head, "g_tail": g_tail,
        "head_size": size,
    }
    assert size.max() > 64  # some rows took the fallback search
    for name, value in want.items():
        value[5] = 0.0
        got = getattr(f, name)
        assert got.dtype == torch.float32 and not got.requires_grad
        np.testing.assert_allclose(got.numpy(), value, rtol=2e-5, atol=2e-6, err_msg=name)
    torch.testing.assert_close(f.terms["f"], f.fkl)


def test_low_precision_teacher_is_upcast():
    student, teacher = _inputs()
    for dtype in (torch.bfloat16, torch.float16):
        low = teacher.to(dtype)
        a = divergence_pass(student_logits=student, teacher_logits=low, terms={"f": FKL()}).values
        b = divergence_pass(student_logits=student, teacher_logits=low.float(), terms={"f": FKL()}).values
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bf16_student_gets_bf16_gradient():
    student, teacher = _inputs()
    student = student.detach().bfloat16().requires_grad_(True)
    out = divergence_pass(student_logits=student, teacher_logits=teacher, terms={"r": RKL()})
    assert out.values.dtype == torch.float32
    out.values.sum().backward()
    assert student.grad.dtype == torch.bfloat16 and torch.isfinite(student.grad.float()).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_student_with_masked_tokens_gets_the_float32_gradient_rounded(dtype):
    """Padding or prompt tokens in a bf16/fp16 batch: the chunks' float32 gradients are written
    into the student's low-precision gradient rows (they once raised 'Index put requires the
    source and destination dtypes match'), equal to float32 autograd up to that rounding."""
    student, teacher = _inputs(shape=(2, 5), vocab=50)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    low = student.detach().to(dtype).requires_grad_(True)
    terms = {"f": FKL(), "r": RKL()}
    divergence_pass(student_logits=low, teacher_logits=teacher, mask=mask, terms=terms).values.sum().backward()
    reference = low.detach().float().requires_grad_(True)
    _unfused(terms, reference, teacher, mask).sum().backward()
    assert low.grad.dtype == dtype
    assert torch.all(low.grad[~mask] == 0)
    torch.testing.assert_close(low.grad.float(), reference.grad.to(dtype).float(), rtol=0, atol=1e-6)


def test_terms_share_the_pass_temperature():
    student, teacher = _inputs()
    common = dict(student_logits=student, teacher_logits=teacher)
    # terms left at the default follow the pass
    a = divergence_pass(**common, terms={"f": FKL()}, temperature=2.0).values[0]
    torch.testing.assert_close(a, FKL(temperature=2.0)(**common))
    divergence_pass(**common, terms={"f": FKL(temperature=2.0)}, temperature=2.0)
    with pytest.raises(ValueError, match="temperature"):
        divergence_pass(**common, terms={"f": FKL(temperature=3.0)}, temperature=2.0)


def test_sliced_logits_are_read_in_place():
    """``logits[:, :-1]`` (next-token training) has no [N, V] view; rows are gathered per chunk."""
    full_s, full_t = _inputs(shape=(3, 6), vocab=31, kind="mixed", requires_grad=False)
    full_s.requires_grad_(True)
    sliced_s, sliced_t = full_s[:, :-1], full_t[:, :-1]
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 2] = False
    terms = {"f": FKL(), "j": JSD()}
    out = divergence_pass(student_logits=sliced_s, teacher_logits=sliced_t, mask=mask, terms=terms, chunk_size=4)
    (g,) = torch.autograd.grad(out.values.sum(), full_s)
    copy_s = sliced_s.detach().contiguous().requires_grad_(True)
    ref = divergence_pass(student_logits=copy_s, teacher_logits=sliced_t.contiguous(), mask=mask, terms=terms, chunk_size=4)
    (g_ref,) = torch.autograd.grad(ref.values.sum(), copy_s)
    torch.testing.assert_close(out.values, ref.values)
    torch.testing.assert_close(g[:, :-1], g_ref)
    assert (g[:, -1] == 0).all()


def test_strided_layouts_match_contiguous():
    """Transposed and broadcast logits read through their storage give the contiguous results."""
    base_s, base_t = _inputs(shape=(4, 3), vocab=19, kind="random", requires_grad=False)
    student = base_s.transpose(0, 1).requires_grad_(True)  # [3, 4, V], rows out of storage order
    teacher = base_t[:1].expand(4, 3, 19).transpose(0, 1)  # stride-0 rows shared across tokens
    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    terms = {"f": FKL(), "r": RKL()}
    out = divergence_pass(student_logits=student, teacher_logits=teacher, mask=mask, terms=terms, chunk_size=3)
    (g,) = torch.autograd.grad(out.values.sum(), student)
    dense_s = student.detach().contiguous().requires_grad_(True)
    ref = divergence_pass(student_logits=dense_s, teacher_logits=teacher.contiguous(), mask=mask, terms=terms, chunk_size=3)
    (g_ref,) = torch.autograd.grad(ref.values.sum(), dense_s)
    torch.testing.assert_close(out.values, ref.values)
    torch.testing.assert_close(g, g_ref)


def test_shape_errors():
    student, teacher = _inputs()
    with pytest.raises(ValueError, match="shape"):
        FKL()(student_logits=student, teacher_logits=teacher[..., :-1])
    with pytest.raises(ValueError, match="mask"):
        FKL()(student_logits=student, teacher_logits=teacher, mask=torch.ones(3, dtype=torch.bool))


@pytest.mark.slow
def test_full_vocabulary_fused_equals_unfused():
    terms = _all_terms()
    student, teacher = _inputs(shape=(2, 24), vocab=50257, kind="mixed", seed=11)
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[1, 20:] = False
    out = divergence_pass(student_logits=student, teacher_logits=teacher, mask=mask, terms=terms)
    (g,) = torch.autograd.grad(out.values.sum(), student)
    ref = _unfused(terms, student, teacher, mask)
    (g_ref,) = torch.autograd.grad(ref.sum(), student)
    torch.testing.assert_close(out.values, ref.detach(), rtol=1e-5, atol=1e-5)
    # float32 rounding relative to the largest entries (the log-squared AB term reaches ~1e2)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6 * float(g_ref.abs().max()))

"""AKL gaps: top-k fast path with fallback equals a full sort; the head mask lives in vocab order."""

import math

import numpy as np
import pytest
import torch
from _divergences_ref import akl, log_softmax, make_logits, torch_rows

from arkd_bench.divergences import akl_gaps
from arkd_bench.divergences.akl import _top_k


def _logp(x):
    return torch.log_softmax(torch_rows(x), -1)


def test_head_mask_is_applied_in_vocabulary_order():
    # sorted order is [1, 2, 0]; a sorted-order mask applied in vocab order would pick entry 0
    t = torch.tensor([[0.1, 0.6, 0.3]]).log()
    s = torch.tensor([[0.3, 0.3, 0.4]]).log()
    g_head, g_tail, size = akl_gaps(t, s, mu=0.5)
    torch.testing.assert_close(g_head, torch.tensor([0.3]))
    torch.testing.assert_close(g_tail, torch.tensor([0.3]))
    assert size.tolist() == [1.0]


def test_head_is_the_prefix_reaching_mu_with_top1_always_in():
    t = torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]]).log()
    s = torch.full((2, 3), 1 / 3).log()
    assert akl_gaps(t, s, mu=0.5)[2].tolist() == [1.0, 1.0]  # 0.5 reaches 0.5
    assert akl_gaps(t, s, mu=0.6)[2].tolist() == [2.0, 1.0]
    assert akl_gaps(t, s, mu=1e-9)[2].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("mu", [0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("kind", ["mixed", "near_uniform", "peaked"])
def test_matches_full_sort_in_numpy(kind, mu):
    t, s = make_logits(kind, 24, 211, 0), make_logits(kind, 24, 211, 1)
    got = torch.stack(akl_gaps(_logp(t), _logp(s), mu=mu))
    want = akl(np.exp(log_softmax(t)), np.exp(log_softmax(s)), mu)
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-5, atol=2e-6)


def test_top_k_fast_path_equals_full_sort_including_fallback_rows():
    t, s = make_logits("mixed", 30, 500, 2), make_logits("mixed", 30, 500, 3)
    lp, lq = _logp(t), _logp(s)
    full = torch.stack(akl_gaps(lp, lq, mu=0.5, k=500))  # k = V: a plain sort
    sizes = full[2]
    assert (sizes > 4).any() and (sizes <= 4).any()  # both resolved and fallback rows at k=4
    for k in (1, 4, 64):
        torch.testing.assert_close(torch.stack(akl_gaps(lp, lq, mu=0.5, k=k)), full, rtol=0, atol=1e-6)


def test_zero_mass_entries_and_leading_shape():
    t = make_logits("random", 6, 40, 4)
    t[:, :5] = -math.inf
    s = make_logits("random", 6, 40, 5)
    lp, lq = _logp(t).view(2, 3, 40), _logp(s).view(2, 3, 40)
    g_head, g_tail, size = akl_gaps(lp, lq, mu=0.999)
    assert g_head.shape == (2, 3) and torch.isfinite(g_tail).all()
    want = akl(np.exp(log_softmax(t)), np.exp(log_softmax(s)), 0.999)
    np.testing.assert_allclose(torch.stack([g_head, g_tail, size]).view(3, 6).numpy(), want, rtol=2e-5, atol=2e-6)


def test_gaps_carry_no_gradient():
    lp = _logp(make_logits("random", 3, 10, 6))
    lq = _logp(make_logits("random", 3, 10, 7)).requires_grad_(True)
    assert not any(x.requires_grad for x in akl_gaps(lp, lq))
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError):
            akl_gaps(lp, lq, mu=bad)


def test_mu_one_puts_every_mass_carrying_entry_in_the_head():
    t = make_logits("random", 5, 30, 8)
    t[:, :4] = -math.inf
    lp, lq = _logp(t), _logp(make_logits("random", 5, 30, 9))
    g_head, g_tail, size = akl_gaps(lp, lq, mu=1.0)
    assert (size >= 26).all()  # float rounding may or may not stop the prefix before the end
    total = (lp.exp() - lq.exp()).abs().sum(-1)
    torch.testing.assert_close(g_head + g_tail, total)


def test_full_vocabulary_rows():
    """GPT-2-sized vocabulary: the top-64 search with fallback equals a full sort."""
    gen = torch.Generator().manual_seed(0)
    scale = torch.linspace(1.0, 6.0, 48)[:, None]
    lp = torch.log_softmax(torch.randn(48, 50257, generator=gen) * scale, -1)
    lq = torch.log_softmax(torch.randn(48, 50257, generator=gen) * scale, -1)
    fast = torch.stack(akl_gaps(lp, lq))
    full = torch.stack(akl_gaps(lp, lq, k=50257))
    assert (full[2] > 64).any() and (full[2] > 2048).any()
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-6)


@pytest.mark.parametrize("vocab", [16384, 16400, 50257])
def test_blocked_top_k_equals_torch_topk(vocab):
    x = torch.randn(7, vocab, generator=torch.Generator().manual_seed(vocab)) * 3
    x[0, : vocab // 2] = -math.inf  # whole blocks without mass
    x[1, -3:] = 50.0 + torch.arange(3.0)  # the winners sit in the partial last block
    values, idx = _top_k(x, 64)
    want_values, want_idx = x.topk(64, dim=-1)
    torch.testing.assert_close(values, want_values, rtol=0, atol=0)
    torch.testing.assert_close(idx, want_idx, rtol=0, atol=0)


def _official_numpy(p, q, mu):
    """The authors' maintained rule, independently: sort ascending, the tail is the entries
    whose inclusive cumulative teacher mass is <= mu, the head is the rest."""
    order = np.argsort(p, axis=-1, kind="stable")
    ps, qs = np.take_along_axis(p, order, -1), np.take_along_axis(q, order, -1)
    tail = np.cumsum(ps, axis=-1) <= mu
    gap = np.abs(ps - qs)
    return np.stack([(gap * ~tail).sum(-1), (gap * tail).sum(-1), (~tail).sum(-1)])


@pytest.mark.parametrize("mu", [0.05, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("kind", ["mixed", "near_uniform", "peaked"])
def test_official_head_matches_the_ascending_tail_rule_in_numpy(kind, mu):
    t, s = make_logits(kind, 24, 211, 2), make_logits(kind, 24, 211, 3)
    lp, lq = (torch.tensor(log_softmax(x), dtype=torch.float64) for x in (t, s))
    got = torch.stack(akl_gaps(lp, lq, mu=mu, head="official"))
    want = _official_numpy(np.exp(log_softmax(t)), np.exp(log_softmax(s)), mu)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)
    paper = torch.stack(akl_gaps(lp, lq, mu=mu, head="paper"))
    np.testing.assert_allclose(paper.numpy(), akl(np.exp(log_softmax(t)), np.exp(log_softmax(s)), mu),
                               rtol=1e-9, atol=1e-12)


def test_at_mu_0_3_the_official_head_holds_about_0_7_of_the_mass_the_paper_head_0_3():
    t = make_logits("mixed", 64, 211, 5)
    p = np.exp(log_softmax(t))
    lp = torch.tensor(np.log(p))
    order = np.argsort(-p, axis=-1, kind="stable")
    sorted_p = np.take_along_axis(p, order, -1)
    for head, low, high in (("paper", 0.3, 0.7), ("official", 0.7, 1.0)):
        size = akl_gaps(lp, lp, mu=0.3, head=head)[2].numpy().astype(int)
        mass = np.array([row[:k].sum() for row, k in zip(sorted_p, size)])
        before = np.array([row[: k - 1].sum() for row, k in zip(sorted_p, size)])
        assert np.all(mass >= low) and np.all(before < low)  # smallest prefix reaching its mass
        assert np.mean(mass) < high
    paper, official = akl_gaps(lp, lp, mu=0.3)[2], akl_gaps(lp, lp, mu=0.3, head="official")[2]
    assert torch.all(official >= paper) and (official > paper).float().mean() > 0.5  # equal where top-1 has 0.7


def test_head_convention_errors():
    t = torch.tensor([[0.5, 0.3, 0.2]]).log()
    with pytest.raises(ValueError, match="head must be one of paper, official"):
        akl_gaps(t, t, head="tail")
    with pytest.raises(ValueError, match=r"\(0, 1\] with head 'paper'"):
        akl_gaps(t, t, mu=0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\) with head 'official'"):
        akl_gaps(t, t, mu=1.0, head="official")

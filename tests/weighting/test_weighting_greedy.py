"""greedy (AKL) weights against the formula computed independently in numpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from arkd_bench.weighting import BUILTIN_WEIGHTINGS, GreedyWeighting


def expected_token_weights(p, q, mu, mask, akl):
    g_head, g_tail, _ = akl(p, q, mu)
    total = g_head + g_tail
    w_fkl = np.where(total > 0, g_head / np.where(total > 0, total, 1.0), 0.5)
    return np.stack([w_fkl * mask, (1.0 - w_fkl) * mask])


@pytest.mark.parametrize("mu", [0.3, 0.5, 0.9])
def test_token_weights_match_numpy_akl(mu, akl, dists, build_features):
    p, q = dists((3, 7), seed=4)
    mask = np.ones((3, 7), bool)
    mask[0, 5:] = False
    mask[2, 0] = False
    f = build_features(p, q, mask=mask, mu=mu)
    w = GreedyWeighting(terms=["fkl", "rkl"], mu=mu).weights(f)
    assert w.shape == (2, 3, 7)
    np.testing.assert_allclose(w.numpy(), expected_token_weights(p, q, mu, mask, akl), atol=1e-6)
    assert torch.all(w[:, ~torch.tensor(mask)] == 0)
    np.testing.assert_allclose(w.sum(0).numpy(), mask.astype(float), atol=1e-6)


def test_weights_from_the_divergence_pass_gaps(akl, dists, build_features):
    """Features carrying the divergence pass's own gaps give the same weights."""
    from arkd_bench.divergences import akl_gaps

    p, q = dists((2, 6), seed=9)
    mu = 0.5
    t_logp, s_logp = (torch.tensor(np.log(x), dtype=torch.float32) for x in (p, q))
    gaps = akl_gaps(t_logp, s_logp, mu)
    f = build_features(p, q, mu=mu, gaps=tuple(g.double().numpy() for g in gaps))
    w = GreedyWeighting(mu=mu).weights(f)
    np.testing.assert_allclose(w.numpy(), expected_token_weights(p, q, mu, np.ones((2, 6)), akl), atol=1e-5)


def test_identical_distributions_give_half_half(dists, build_features):
    p, _ = dists((2, 4), seed=1)
    w = GreedyWeighting().weights(build_features(p, p.copy()))
    assert torch.allclose(w, torch.full_like(w, 0.5))


def test_batch_granularity_uses_mean_gaps(akl, dists, build_features):
    p, q = dists((2, 5), seed=2)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    strategy = GreedyWeighting(granularity="batch")
    w = strategy.weights(build_features(p, q, mask=mask))
    g_head, g_tail, _ = akl(p, q, 0.5)
    head, tail = g_head[mask].mean(), g_tail[mask].mean()
    assert w.shape == (2,)
    np.testing.assert_allclose(w.numpy(), [head / (head + tail), tail / (head + tail)], atol=1e-6)
    assert strategy.log_scalars()["alpha"] == pytest.approx(float(w[0]))


def test_all_masked_batch_is_safe(dists, build_features):
    p, q = dists((1, 3), seed=3)
    f = build_features(p, q, mask=np.zeros((1, 3), bool))
    assert torch.all(GreedyWeighting().weights(f) == 0)
    assert torch.allclose(GreedyWeighting(granularity="batch").weights(f), torch.tensor([0.5, 0.5]))


def test_mu_is_exposed_for_the_divergence_pass():
    assert GreedyWeighting(mu=0.7).akl_mu == 0.7
    assert BUILTIN_WEIGHTINGS["greedy"] is GreedyWeighting


@pytest.mark.parametrize(
    "terms, message",
    [
        (["fkl"], "exactly two"),
        (["fkl", "rkl", "tvd"], "exactly two"),
        (["rkl", "fkl"], "swapped"),
    ],
)
def test_check_terms_errors(terms, message):
    with pytest.raises(ValueError, match=message):
        GreedyWeighting(terms=terms)


def test_any_two_labels_are_accepted():
    assert GreedyWeighting(terms=["skew_fkl", "skew_rkl"]).terms == ["skew_fkl", "skew_rkl"]


@pytest.mark.parametrize(
    "options, field",
    [
        ({"mu": 0.0}, "mu"),
        ({"mu": 1.5}, "mu"),
        ({"granularity": "sequence"}, "granularity"),
        ({"alpha": 1}, "alpha"),
    ],
)
def test_invalid_options_rejected(options, field):
    with pytest.raises(ValidationError, match=field):
        GreedyWeighting(**options)


def test_official_head_option_reaches_the_divergence_pass(dists):
    """head: official travels from the options to the pass (`akl_head`) and its gaps give
    weights from the ascending-tail rule, computed here in numpy."""
    from arkd_bench import get_divergence
    from arkd_bench.divergences import divergence_pass

    p, q = dists((2, 6), seed=3)
    strategy = GreedyWeighting(terms=["fkl", "rkl"], mu=0.3, head="official")
    assert (strategy.akl_mu, strategy.akl_head) == (0.3, "official")
    assert GreedyWeighting().akl_head == "paper"
    t_logits, s_logits = (torch.tensor(np.log(x), dtype=torch.float64) for x in (p, q))
    out = divergence_pass(student_logits=s_logits, teacher_logits=t_logits,
                          terms={"fkl": get_divergence("fkl"), "rkl": get_divergence("rkl")},
                          mu=strategy.akl_mu, head=strategy.akl_head)
    order = np.argsort(p, axis=-1, kind="stable")
    ps, qs = np.take_along_axis(p, order, -1), np.take_along_axis(q, order, -1)
    tail = np.cumsum(ps, axis=-1) <= 0.3
    g_head, g_tail = (np.abs(ps - qs) * ~tail).sum(-1), (np.abs(ps - qs) * tail).sum(-1)
    w = strategy.weights(out.features)
    np.testing.assert_allclose(w[0].numpy(), g_head / (g_head + g_tail), atol=1e-6)
    np.testing.assert_allclose(w[1].numpy(), g_tail / (g_head + g_tail), atol=1e-6)


@pytest.mark.parametrize("options, message", [
    ({"head": "official", "mu": 1.0}, r"\[0, 1\) with head 'official'"),
    ({"mu": 0.0}, r"\(0, 1\] with head 'paper'"),
    ({"head": "tail"}, "head"),
])
def test_head_option_ranges(options, message):
    with pytest.raises(ValidationError, match=message):
        GreedyWeighting(**options)
    assert GreedyWeighting(head="official", mu=0.0).akl_mu == 0.0  # official: the whole vocabulary is head

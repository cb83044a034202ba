"""Mathematical properties: zero on identical inputs, non-negativity, symmetries, limits, bounds."""

import math

import numpy as np
import torch
from _divergences_ref import pair, torch_rows

from arkd_bench.divergences import BUILTIN_DIVERGENCES, FKL, JSD, RKL, AB, SkewFKL, SkewRKL, ToDi

KINDS = ["random", "peaked", "near_uniform", "mixed"]


def _call(div, t, s):
    return div(student_logits=torch_rows(s), teacher_logits=torch_rows(t))


def _rows64(kind="random", n=6, vocab=19, seed=0):
    """float64 log-prob rows for per_token, where limits can be probed without float32 noise."""
    t, s = pair(kind, n, vocab, seed)
    return (torch.log_softmax(torch.from_numpy(x).double(), -1) for x in (t, s))


def test_zero_on_identical_inputs(case):
    name, opts = case
    for kind in KINDS:
        t, _ = pair(kind, seed=2)
        value = _call(BUILTIN_DIVERGENCES[name](**opts), t, t)
        torch.testing.assert_close(value, torch.zeros_like(value), atol=2e-6, rtol=0, msg=kind)


def test_non_negative(case):
    name, opts = case
    for kind in KINDS:
        t, s = pair(kind, n=20, seed=4)
        assert (_call(BUILTIN_DIVERGENCES[name](**opts), t, s) >= -1e-6).all(), kind


def test_fkl_is_rkl_with_arguments_swapped():
    t, s = pair("mixed", n=9, seed=5)
    torch.testing.assert_close(_call(FKL(), t, s), _call(RKL(), s, t), rtol=1e-6, atol=1e-7)


def test_jsd_bounded_by_ln2_and_symmetric_at_half():
    t, s = pair("random", n=8, seed=6)
    value = _call(JSD(), t, s)
    torch.testing.assert_close(value, _call(JSD(), s, t), rtol=1e-5, atol=1e-7)
    # disjoint point masses reach the bound
    peak_t, peak_s = np.full((1, 10), -1e4, np.float32), np.full((1, 10), -1e4, np.float32)
    peak_t[0, 1], peak_s[0, 7] = 0.0, 0.0
    extreme = _call(JSD(), peak_t, peak_s)
    assert (value <= math.log(2)).all()
    torch.testing.assert_close(extreme, torch.tensor([math.log(2)]), rtol=1e-6, atol=1e-6)


def test_jsd_beta_endpoints_are_the_kl_limits():
    lp, lq = _rows64()
    fkl, rkl = FKL().per_token(lp, lq), RKL().per_token(lp, lq)
    torch.testing.assert_close(JSD(beta=0.0).per_token(lp, lq), fkl)
    torch.testing.assert_close(JSD(beta=1.0).per_token(lp, lq), rkl)
    eps = 1e-6  # JSD_beta / beta -> FKL and JSD_beta / (1 - beta) -> RKL
    torch.testing.assert_close(JSD(beta=eps).per_token(lp, lq) / eps, fkl, rtol=1e-4, atol=0)
    torch.testing.assert_close(JSD(beta=1 - eps).per_token(lp, lq) / eps, rkl, rtol=1e-4, atol=0)


def test_ab_limits_are_fkl_and_rkl_and_continuous():
    lp, lq = _rows64("mixed")
    fkl, rkl = FKL().per_token(lp, lq), RKL().per_token(lp, lq)
    torch.testing.assert_close(AB(alpha=1.0, beta=0.0).per_token(lp, lq), fkl)
    torch.testing.assert_close(AB(alpha=0.0, beta=1.0).per_token(lp, lq), rkl)
    # the general formula approaches each limit branch
    for a, b, a0, b0 in [(1.0, 1e-7, 1.0, 0.0), (1e-7, 1.0, 0.0, 1.0), (0.4, 1e-7, 0.4, 0.0),
                         (1e-7, 0.7, 0.0, 0.7)]:
        near = AB(alpha=a, beta=b).per_token(lp, lq)
        at = AB(alpha=a0, beta=b0).per_token(lp, lq)
        torch.testing.assert_close(near, at, rtol=1e-5, atol=0)
    # the double limit at the origin converges more slowly (first order in alpha + beta)
    lp, lq = _rows64("random")
    near = AB(alpha=1e-6, beta=1e-6).per_token(lp, lq)
    torch.testing.assert_close(near, AB(alpha=0.0, beta=0.0).per_token(lp, lq), rtol=1e-4, atol=0)


def test_ab_on_the_alpha_plus_beta_one_line_is_the_alpha_divergence():
    lp, lq = _rows64()
    a = 0.3
    alpha_div = (1 - (lp.exp() ** a * lq.exp() ** (1 - a)).sum(-1)) / (a * (1 - a))
    torch.testing.assert_close(AB(alpha=a, beta=1 - a).per_token(lp, lq), alpha_div)


def test_skew_limits_and_bound():
    t, s = pair("mixed", n=9, seed=8)
    torch.testing.assert_close(_call(SkewFKL(alpha=0.0), t, s), _call(FKL(), t, s))
    torch.testing.assert_close(_call(SkewRKL(alpha=0.0), t, s), _call(RKL(), t, s))
    # convexity of KL in its second argument: skew KL <= (1 - alpha) KL
    for alpha in (0.1, 0.5, 0.9):
        assert (_call(SkewFKL(alpha=alpha), t, s) <= (1 - alpha) * _call(FKL(), t, s) + 1e-6).all()
        assert (_call(SkewRKL(alpha=alpha), t, s) <= (1 - alpha) * _call(RKL(), t, s) + 1e-6).all()


def test_todi_value_is_fkl_plus_rkl_at_unit_sharpness():
    # sigmoid(log p - log q) = p / (p + q), so the mixed value is the Jeffreys divergence
    t, s = pair("mixed", n=9, seed=9)
    torch.testing.assert_close(_call(ToDi(), t, s), _call(FKL(), t, s) + _call(RKL(), t, s), rtol=1e-5, atol=1e-6)

"""Every builtin against the independent float64 numpy formulas."""

import numpy as np
import pytest
import torch
from _divergences_ref import REFERENCE, log_softmax, pair, torch_rows

from arkd_bench.divergences import BUILTIN_DIVERGENCES


def _check(name, opts, t_logits, s_logits, temperature=1.0):
    div = BUILTIN_DIVERGENCES[name](temperature=temperature, **opts)
    got = div(student_logits=torch_rows(s_logits), teacher_logits=torch_rows(t_logits))
    p = np.exp(log_softmax(t_logits, temperature))
    q = np.exp(log_softmax(s_logits, temperature))
    want = REFERENCE[name](p, q, **opts)
    assert not torch.isnan(got).any()
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-5, atol=1e-6)
    return got, want


def test_matches_numpy(case):
    name, opts = case
    for seed, kind in enumerate(["random", "peaked", "near_uniform", "mixed"]):
        t, s = pair(kind, n=7, vocab=23, seed=seed)
        _check(name, opts, t, s)


@pytest.mark.parametrize("temperature", [0.5, 2.5])
def test_temperature_divides_logits(case, temperature):
    name, opts = case
    t, s = pair("random", seed=3)
    _check(name, opts, t, s, temperature)


@pytest.mark.parametrize("where", ["shared", "teacher_only", "student_only"])
def test_neg_inf_logits(case, where):
    """-inf logits: shared ones contribute nothing; one-sided ones give exactly what the
    mathematics gives (a finite value or +inf), never NaN."""
    name, opts = case
    t, s = pair("random", n=5, vocab=13, seed=7)
    cols = [2, 5, 11]
    if where in ("shared", "teacher_only"):
        t[:, cols] = -np.inf
    if where in ("shared", "student_only"):
        s[:, cols] = -np.inf
    got, want = _check(name, opts, t, s)
    if where == "shared":
        assert np.isfinite(want).all()


def test_one_sided_support_gives_inf_not_nan():
    t, s = pair("random", n=3, vocab=9, seed=1)
    s[:, 4] = -np.inf  # the teacher has mass the student cannot cover
    fkl = BUILTIN_DIVERGENCES["fkl"]()(student_logits=torch_rows(s), teacher_logits=torch_rows(t))
    rkl = BUILTIN_DIVERGENCES["rkl"]()(student_logits=torch_rows(s), teacher_logits=torch_rows(t))
    assert torch.isinf(fkl).all() and torch.isfinite(rkl).all()

"""The reference plugin: found through its entry point, weights as documented."""
import importlib.metadata

import numpy as np
import pytest
import torch

import arkd_bench
from arkd_bench.divergences import divergence_pass, FKL, RKL
from arkd_bench.plugins import load_plugins


def test_entry_point_registers_the_weighting():
    names = [ep.name for ep in importlib.metadata.entry_points(group="arkd_bench")]
    assert "confidence" in names
    entry = load_plugins(autoload=True).registry("weighting").get("confidence")
    assert entry.origin == "confidence"


def test_weights_follow_the_entropies():
    torch.manual_seed(0)
    teacher, student = torch.randn(2, 5, 7) * 2, torch.randn(2, 5, 7)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    features = divergence_pass(student_logits=student, teacher_logits=teacher, mask=mask,
                               terms={"fkl": FKL(), "rkl": RKL()}).features
    strategy = arkd_bench.get_weighting("confidence", terms=["fkl", "rkl"], power=2.0)
    weights = strategy.weights(features).numpy()

    def entropy(logits):
        p = np.exp(logits.double().numpy())
        p /= p.sum(-1, keepdims=True)
        return -(p * np.log(p)).sum(-1)

    h_t, h_s = entropy(teacher) ** 2, entropy(student) ** 2
    expected = np.where(mask.numpy(), h_t / (h_t + h_s), 0.0)
    np.testing.assert_allclose(weights[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights[1], np.where(mask.numpy(), 1 - expected, 0.0), rtol=1e-5, atol=1e-6)


def test_needs_two_terms_and_a_positive_power():
    with pytest.raises(ValueError, match="needs two terms"):
        arkd_bench.get_weighting("confidence", terms=["fkl"])
    with pytest.raises(ValueError):
        arkd_bench.get_weighting("confidence", terms=["fkl", "rkl"], power=0)

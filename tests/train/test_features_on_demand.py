"""The step's AKL features are computed only for a strategy that reads them: a fixed mix's pass
computes none, and training gives the same student, losses and weights to the last bit."""
from __future__ import annotations

import pytest
import torch

from arkd_bench.divergences import FKL, RKL, StepFeatures, divergence_pass
from arkd_bench.divergences.chunk_pass import LinearHead
from arkd_bench.weighting import FixedWeighting, PassSettings
from test_distill_step import batch_of, make_distiller


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


class FixedWithFeatures(FixedWeighting):
    """The fixed mix as it ran before: asking the pass for every feature."""

    @property
    def pass_settings(self) -> PassSettings:
        return PassSettings(features=True)


@pytest.mark.parametrize("fused", [False, True])
def test_the_pass_without_features_returns_none_and_the_same_values_and_gradients(fused):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 7, 16 if fused else 50, generator=gen)
    weight = torch.randn(50, 16, generator=gen)
    teacher = torch.randn(2, 7, 50, generator=gen)
    mask = torch.rand(2, 7, generator=gen) > 0.3
    results = []
    for features in (True, False):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        out = divergence_pass(student_logits=h, teacher_logits=teacher, mask=mask, terms={"f": FKL(), "r": RKL()},
                              chunk_size=4, lm_head=LinearHead(w) if fused else None, features=features)
        (out.values * torch.tensor([0.3, 0.7]).view(2, 1, 1)).sum().backward()
        results.append((out, h.grad, w.grad))
    (with_f, h1, w1), (without, h2, w2) = results
    assert all(getattr(with_f.features, name) is not None for name in StepFeatures.COMPUTED)
    assert all(getattr(without.features, name) is None for name in StepFeatures.COMPUTED)
    assert bool(without.features.inputs_finite.all())
    assert torch.equal(with_f.values, without.values) and torch.equal(h1, h2)
    if fused:
        assert torch.equal(w1, w2)
    logged = without.features.to_batch_dict()
    assert "g_head" not in logged and logged["terms.f"] == with_f.features.to_batch_dict()["terms.f"]


def test_the_pass_still_says_where_a_model_is_not_finite():
    student, teacher = torch.randn(3, 20), torch.randn(3, 20)
    teacher[1, 4] = float("nan")
    out = divergence_pass(student_logits=student, teacher_logits=teacher, terms={"f": FKL()}, features=False)
    assert out.features.inputs_finite.tolist() == [True, False, True]


def test_a_fixed_mix_trains_the_same_student_without_features(tokenizer, builtin_plugins):
    students, logs = [], []
    for strategy_type in (FixedWithFeatures, FixedWeighting):
        d = make_distiller(tokenizer, builtin_plugins, steps=3, log_every=1, lr=0.02, fused_head=True)
        d.strategy.__class__ = strategy_type
        batch = batch_of(tokenizer, d.dataset.items[:8])
        features = d._micro_step(batch, 0, d._step_tokens([batch])).features
        assert (features.g_head is None) == (strategy_type is FixedWeighting)
        d.student.zero_grad()
        logs.append(d.run().log)
        students.append(d.student.state_dict())
    for name, value in students[0].items():
        assert torch.equal(students[1][name], value), name
    for before, after in zip(*logs):
        assert "feature/g_head" in before and "feature/g_head" not in after
        assert {k: v for k, v in before.items() if k in after} == after  # every value kept is the same

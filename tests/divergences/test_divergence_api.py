"""Registry, options validation and the StepFeatures helpers."""

import pydantic
import pytest
import torch

from arkd_bench.divergences import (
    BUILTIN_DIVERGENCES,
    FKL,
    RKL,
    Divergence,
    DivergenceOptions,
    StepFeatures,
    divergence_pass,
)


def test_builtin_registry():
    assert set(BUILTIN_DIVERGENCES) == {"fkl", "rkl", "tvd", "jsd", "skew_fkl", "skew_rkl", "ab", "todi"}
    for name, cls in BUILTIN_DIVERGENCES.items():
        assert cls.name == name and issubclass(cls, Divergence)
        assert issubclass(cls.Options, DivergenceOptions)
        assert cls.Options.model_config["extra"] == "forbid"
        assert cls().options.temperature == 1.0


@pytest.mark.parametrize(
    "name, bad",
    [
        ("fkl", {"temperature": 0.0}),
        ("fkl", {"temperature": -1.0}),
        ("fkl", {"alpha": 0.1}),  # unknown option
        ("jsd", {"beta": 1.5}),
        ("jsd", {"beta": -0.1}),
        ("skew_fkl", {"alpha": 1.0}),
        ("skew_rkl", {"alpha": -0.2}),
        ("ab", {"alpha": -0.5}),
        ("ab", {"beta": -1.0}),
        ("todi", {"sharpness": 0.0}),
    ],
)
def test_invalid_options_are_rejected(name, bad):
    with pytest.raises(pydantic.ValidationError):
        BUILTIN_DIVERGENCES[name](**bad)


def test_options_are_stored_and_shown():
    div = BUILTIN_DIVERGENCES["ab"](alpha=0.5, beta=0.25, temperature=2.0)
    assert (div.options.alpha, div.options.beta, div.options.temperature) == (0.5, 0.25, 2.0)
    assert "alpha=0.5" in repr(div)


def _features(mask):
    student = torch.randn(2, 3, 11, generator=torch.Generator().manual_seed(0))
    teacher = torch.randn(2, 3, 11, generator=torch.Generator().manual_seed(1))
    return divergence_pass(student_logits=student, teacher_logits=teacher, mask=mask,
                           terms={"fwd": FKL(), "rev": RKL()}).features


def test_step_features_batch_means():
    mask = torch.tensor([[True, True, False], [False, True, True]])
    f = _features(mask)
    assert f.mask.dtype == torch.bool and f.num_tokens == 4
    expected = float(f.fkl[mask].double().mean())
    assert f.batch_mean("fkl") == pytest.approx(expected)
    assert f.batch_mean("terms.fwd") == pytest.approx(expected)
    assert f.batch_mean(torch.ones(2, 3)) == pytest.approx(1.0)  # masked positions ignored
    with pytest.raises(KeyError):
        f.batch_mean("nope")
    with pytest.raises(ValueError):
        f.batch_mean("ce")  # not filled in
    f.ce = torch.full((2, 3), 2.0)
    logged = f.to_batch_dict()
    assert logged["ce"] == pytest.approx(2.0) and logged["terms.rev"] == pytest.approx(f.batch_mean("rkl"))
    assert set(StepFeatures.COMPUTED) <= set(logged)


def test_step_features_progress_and_empty_batch():
    f = _features(torch.zeros(2, 3, dtype=torch.bool))
    assert f.progress == 0.0 and f.batch_mean("g_head") == 0.0
    f.step, f.total_steps = 3, 13
    assert f.progress == 0.25
    f.step = 12
    assert f.progress == 1.0  # the last step

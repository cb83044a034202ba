"""Hand-made StepFeatures and Feedback for driving weighting strategies without a model."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


def akl_reference(p: np.ndarray, q: np.ndarray, mu: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AKL gaps from probabilities [..., V], independently in numpy (float64).

    Sort by teacher probability; the head is the smallest prefix whose mass reaches mu,
    i.e. the tokens whose preceding mass is still below mu (so top-1 is always in).
    """
    order = np.argsort(-p, axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, axis=-1)
    qs = np.take_along_axis(q, order, axis=-1)
    mass_before = np.cumsum(ps, axis=-1) - ps
    head = mass_before < mu
    gap = np.abs(ps - qs)
    return (gap * head).sum(-1), (gap * ~head).sum(-1), head.sum(-1)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def random_distributions(shape=(2, 5), vocab=11, seed=0, sharpness=2.0):
    rng = np.random.default_rng(seed)
    p = _softmax(sharpness * rng.standard_normal((*shape, vocab)))
    q = _softmax(sharpness * rng.standard_normal((*shape, vocab)))
    return p, q


def features_from(p, q, mask=None, mu=0.5, step=0, total_steps=100, labels=None, gaps=None):
    """StepFeatures computed exactly from p and q (numpy), 0 at masked tokens."""
    from arkd_bench.divergences import StepFeatures

    shape = p.shape[:-1]
    mask = np.ones(shape, bool) if mask is None else np.asarray(mask, bool)
    g_head, g_tail, head_size = akl_reference(p, q, mu) if gaps is None else gaps
    values = {
        "fkl": (p * (np.log(p) - np.log(q))).sum(-1),
        "rkl": (q * (np.log(q) - np.log(p))).sum(-1),
        "teacher_entropy": -(p * np.log(p)).sum(-1),
        "student_entropy": -(q * np.log(q)).sum(-1),
        "top1_agree": (p.argmax(-1) == q.argmax(-1)).astype(float),
        "g_head": g_head,
        "g_tail": g_tail,
        "head_size": head_size,
    }
    if labels is not None:
        values["ce"] = -np.log(np.take_along_axis(q, labels[..., None], -1)[..., 0])

    def t(v):
        return torch.tensor(np.where(mask, v, 0.0), dtype=torch.float32)

    tensors = {k: t(v) for k, v in values.items()}
    return StepFeatures(
        mask=torch.tensor(mask),
        terms={"fkl": tensors["fkl"], "rkl": tensors["rkl"]},
        ce=tensors.pop("ce", None),
        step=step,
        total_steps=total_steps,
        **tensors,
    )


@pytest.fixture
def make_features():
    """make_features(shape=(2, 5), seed=0, mask=None, step=0, total_steps=100, with_ce=True)."""

    def make(shape=(2, 5), seed=0, mask=None, step=0, total_steps=100, with_ce=True, mu=0.5):
        p, q = random_distributions(shape, seed=seed)
        labels = np.random.default_rng(seed + 1).integers(0, p.shape[-1], shape) if with_ce else None
        return features_from(p, q, mask=mask, mu=mu, step=step, total_steps=total_steps, labels=labels)

    return make


def probe_feedback(features, reward: float, step: int = 0, total_steps: int = 100):
    """A Feedback whose probe criterion (fkl + rkl) decreased by `reward`."""
    from arkd_bench.weighting import Feedback

    return Feedback(
        step=step,
        total_steps=total_steps,
        loss=0.0,
        term_losses={},
        features=features,
        probe_before={"fkl": reward, "rkl": 0.5, "tvd": 0.0},
        probe_after={"fkl": 0.0, "rkl": 0.5, "tvd": 0.0},
    )


# Helpers as fixtures: test modules cannot import this conftest by name without
# clashing with other test folders' conftest modules.
@pytest.fixture
def akl():
    return akl_reference


@pytest.fixture
def dists():
    return random_distributions


@pytest.fixture
def build_features():
    return features_from


@pytest.fixture
def feedback():
    return probe_feedback

"""schedule: endpoints, monotone paths, warmup, shapes, option errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from arkd_bench.weighting import BUILTIN_WEIGHTINGS, ScheduleWeighting

START, END = [1.0, 0.0], [0.2, 0.8]


@pytest.mark.parametrize("shape", ["linear", "cosine", "step"])
def test_endpoints_and_monotone(shape, make_features):
    s = ScheduleWeighting(terms=["fkl", "rkl"], start=START, end=END, shape=shape)
    path = np.array([s.weights(make_features(step=k, total_steps=50)).numpy() for k in range(51)])
    np.testing.assert_allclose(path[0], START)
    np.testing.assert_allclose(path[-1], END, atol=1e-6)
    assert np.all(np.diff(path[:, 0]) <= 1e-7) and np.all(np.diff(path[:, 1]) >= -1e-7)
    assert s.log_scalars() == pytest.approx({"w_fkl": END[0], "w_rkl": END[1]})


def test_shapes_at_midpoint():
    def mix(**kw):
        return ScheduleWeighting(start=START, end=END, **kw).mix(0.5)

    assert mix(shape="linear") == pytest.approx([0.6, 0.4])
    assert mix(shape="cosine") == pytest.approx([0.6, 0.4])  # cosine crosses the midpoint at t = 0.5
    assert ScheduleWeighting(start=START, end=END, shape="cosine").mix(0.25)[0] > 0.8  # slow start
    assert mix(shape="step", step_at=0.6) == pytest.approx(START)
    assert mix(shape="step", step_at=0.4) == pytest.approx(END)


def test_warmup_holds_start_then_runs_over_the_rest():
    s = ScheduleWeighting(start=START, end=END, warmup_fraction=0.2)
    assert s.mix(0.0) == s.mix(0.2) == START
    assert s.mix(0.6) == pytest.approx([0.6, 0.4])
    assert s.mix(1.0) == pytest.approx(END)


def test_weights_tensor(make_features):
    s = ScheduleWeighting(terms=["fkl", "rkl", "tvd"], start=[1, 0, 0], end=[0, 0.5, 0.5])
    w = s.weights(make_features())
    assert w.dtype == torch.float32 and w.shape == (3,)
    assert BUILTIN_WEIGHTINGS["schedule"] is ScheduleWeighting


@pytest.mark.parametrize(
    "options, message",
    [
        ({"start": [1.0, 0.0], "end": [1.0]}, "start has 2 weights but end has 1"),
        ({"start": [1.0, -0.1], "end": [0.0, 1.0]}, "finite and >= 0"),
        ({"start": START, "end": END, "step_at": 0.3}, "step_at only applies to shape: step"),
        ({"start": START, "end": END, "shape": "exp"}, "shape"),
        ({"start": START, "end": END, "warmup_fraction": 1.0}, "warmup_fraction"),
        ({"start": START}, "end"),
        ({"start": START, "end": END, "speed": 2}, "speed"),
    ],
)
def test_invalid_options_rejected(options, message):
    with pytest.raises(ValidationError, match=message):
        ScheduleWeighting(**options)


def test_check_terms_counts_weights():
    with pytest.raises(ValueError, match="2 weights per mix for 3 terms"):
        ScheduleWeighting(terms=["fkl", "rkl", "tvd"], start=START, end=END)

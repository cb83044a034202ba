import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from arkd_bench.evaluate import stats
from arkd_bench.evaluate.stats import Comparison, mean_std, paired_bootstrap, paired_permutation


def test_mean_std():
    values = [31.5, 30.25, 33.0, 29.75]
    mean, std, n = mean_std(values)
    assert (mean, n) == (pytest.approx(np.mean(values)), 4)
    assert std == pytest.approx(np.std(values, ddof=1))
    assert mean_std([12.0]) == (12.0, 0.0, 1)
    mean, std, n = mean_std([])
    assert math.isnan(mean) and (std, n) == (0.0, 0)


def synthetic_pair(rng, n, delta):
    """Paired scores: a shared per-example difficulty, method noise, true gap delta."""
    difficulty = rng.normal(30.0, 10.0, n)
    a = difficulty + delta + rng.normal(0.0, 4.0, n)
    b = difficulty + rng.normal(0.0, 4.0, n)
    return a, b


def test_bootstrap_interval_covers_the_true_difference_at_about_the_nominal_rate():
    rng = np.random.default_rng(1234)
    delta, covered = 1.5, 0
    for rep in range(200):
        a, b = synthetic_pair(rng, 60, delta)
        c = paired_bootstrap(a, b, n_resamples=1000, confidence=0.95, seed=rep)
        assert c.low <= c.diff <= c.high
        covered += c.low <= delta <= c.high
    assert 0.90 <= covered / 200 <= 0.99


def test_permutation_p_values_are_uniform_under_the_null():
    rng = np.random.default_rng(99)
    p = np.array([paired_permutation(*synthetic_pair(rng, 40, 0.0), n_resamples=500, seed=k)
                  for k in range(200)])
    assert 0.01 <= np.mean(p <= 0.05) <= 0.10
    assert 0.05 <= np.mean(p <= 0.2) <= 0.35
    assert scipy_stats.kstest(p, "uniform").pvalue > 0.01


def test_large_effect_gives_a_small_p_value_and_an_interval_excluding_zero():
    a, b = synthetic_pair(np.random.default_rng(5), 100, 5.0)
    c = paired_bootstrap(a, b, n_resamples=2000)
    assert isinstance(c, Comparison) and c.n == 100
    assert c.p_value == pytest.approx(1 / 2001)  # no sign pattern beats the observed one
    assert 0 < c.low < c.diff < c.high
    assert c.diff == pytest.approx(np.mean(a - b))


def test_exact_enumeration_for_few_examples():
    # d = 1, 2, 3: of the 8 sign patterns only +++ and --- reach |mean| = 2
    assert paired_permutation([1, 2, 3], [0, 0, 0]) == pytest.approx(2 / 8)
    assert paired_permutation([5.0], [4.0]) == 1.0
    assert paired_permutation([1, 2, 3], [1, 2, 3]) == 1.0


def test_results_depend_only_on_the_seed_not_on_block_size(monkeypatch):
    a, b = synthetic_pair(np.random.default_rng(7), 300, 0.3)
    first = paired_bootstrap(a, b, n_resamples=700, seed=3)
    assert paired_bootstrap(a, b, n_resamples=700, seed=3) == first
    monkeypatch.setattr(stats, "_BLOCK", 1000)  # 3 resamples per block
    assert paired_bootstrap(a, b, n_resamples=700, seed=3) == first
    assert paired_bootstrap(a, b, n_resamples=700, seed=4) != first


def test_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap([1, 2], [1])
    with pytest.raises(ValueError, match="no examples"):
        paired_permutation([], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([1, 2], [1, 2], confidence=95)
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([1, float("nan")], [1, 2])

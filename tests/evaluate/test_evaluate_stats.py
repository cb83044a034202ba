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


# -- two levels: training seeds x test examples ------------------------------------------------

def seeded_pair(rng, seeds, n, delta, seed_sd=3.0, example_sd=1.0, noise_sd=2.0):
    """Scores (seeds x examples) of two methods on shared examples: per-example difficulty,
    a method-by-example effect, a per-seed effect of each method, seed x example noise."""
    difficulty = rng.normal(30.0, 10.0, n)
    a = (difficulty + delta + rng.normal(0.0, example_sd, n) + rng.normal(0.0, seed_sd, (seeds, 1))
         + rng.normal(0.0, noise_sd, (seeds, n)))
    b = difficulty + rng.normal(0.0, seed_sd, (seeds, 1)) + rng.normal(0.0, noise_sd, (seeds, n))
    return a, b


def test_two_level_interval_reaches_nominal_coverage_where_seed_variance_dominates():
    # 3 seeds, 40 examples; the seed effect (sd 3) dwarfs what examples add (sd of their mean ~0.3)
    rng = np.random.default_rng(2024)
    delta, reps, two_level, examples_only, false_positives = 1.0, 300, 0, 0, 0
    for rep in range(reps):
        a, b = seeded_pair(rng, 3, 40, delta)
        c = stats.seeded_bootstrap(a, b, paired_seeds=True, n_resamples=400, seed=rep)
        assert c.low <= c.diff <= c.high and c.interval == "seeds+examples" and c.seeds == (3, 3)
        two_level += c.low <= delta <= c.high
        e = paired_bootstrap(a.mean(axis=0), b.mean(axis=0), n_resamples=400, seed=rep)
        examples_only += e.low <= delta <= e.high
        a0, b0 = seeded_pair(rng, 3, 40, 0.0)
        false_positives += stats.seeded_bootstrap(a0, b0, paired_seeds=True, n_resamples=400, seed=rep).p_value < 0.05
    assert 0.92 <= two_level / reps <= 0.98
    assert examples_only / reps < 0.5  # seeds averaged away: the interval is far too narrow
    assert false_positives / reps <= 0.09


def test_two_level_interval_with_different_seeds_per_method_resamples_each_side():
    rng = np.random.default_rng(7)
    reps, covered = 200, 0
    for rep in range(reps):
        a, b = seeded_pair(rng, 4, 30, 2.0)
        c = stats.seeded_bootstrap(a, b[:3], n_resamples=400, seed=rep)  # 4 seeds against 3, unpaired
        assert c.seeds == (4, 3) and not c.paired_seeds
        covered += c.low <= 2.0 <= c.high
    assert 0.91 <= covered / reps <= 0.99


def test_two_level_without_seed_variance_still_covers_and_a_real_gap_is_found():
    rng = np.random.default_rng(11)
    reps, covered = 200, 0
    for rep in range(reps):
        a, b = seeded_pair(rng, 3, 60, 1.0, seed_sd=0.0, noise_sd=4.0)
        c = stats.seeded_bootstrap(a, b, paired_seeds=True, n_resamples=400, seed=rep)
        covered += c.low <= 1.0 <= c.high
    # with no seed effect the interval is conservative (seed means are known to 2 df only)
    assert covered / reps >= 0.95
    a, b = seeded_pair(np.random.default_rng(3), 5, 200, 6.0, seed_sd=1.0)
    c = stats.seeded_bootstrap(a, b, paired_seeds=True)
    assert c.p_value < 0.01 and 0 < c.low < c.diff < c.high
    assert c.diff == pytest.approx(float((a - b).mean()))


def test_two_level_variance_matches_the_random_effects_estimate():
    # the bootstrap's standard error is the unbiased one of the two-way model, not the raw
    # resampling's (which shrinks the seed part by (k-1)/k and triples the noise)
    rng = np.random.default_rng(5)
    k, n = 4, 50
    d = rng.normal(0, 2.0, (k, 1)) + rng.normal(0, 1.0, (1, n)) + rng.normal(0, 3.0, (k, n))
    c = stats.seeded_bootstrap(d, np.zeros_like(d), paired_seeds=True, n_resamples=20000)
    seed_means, ex_means, grand = d.mean(1), d.mean(0), d.mean()
    ms_seed = n * ((seed_means - grand) ** 2).sum() / (k - 1)
    ms_ex = k * ((ex_means - grand) ** 2).sum() / (n - 1)
    resid = d - seed_means[:, None] - ex_means[None, :] + grand
    ms_resid = (resid**2).sum() / ((k - 1) * (n - 1))
    seed_part, example_part = ms_seed / (k * n), (ms_ex - ms_resid) / (k * n)
    expected_se = np.sqrt(seed_part + example_part)
    df = (seed_part + example_part) ** 2 / (seed_part**2 / (k - 1) + example_part**2 / (n - 1))
    half = (c.high - c.low) / 2
    assert half == pytest.approx(scipy_stats.t.ppf(0.975, df) * expected_se, rel=0.03)
    raw = np.sqrt(((k - 1) / k * ms_seed + (n - 1) / n * ms_ex + ms_resid * (k - 1) * (n - 1) / (k * n)) / (k * n))
    assert abs(raw / expected_se - 1) > 0.05  # the raw resampling would be visibly off


def test_two_level_one_sample_and_bad_inputs():
    a = np.random.default_rng(1).normal(10.0, 1.0, (3, 20))
    c = stats.seeded_bootstrap(a)
    assert c.seeds == (3, 0) and c.low < a.mean() < c.high
    assert stats.seeded_bootstrap(a, seed=4) == stats.seeded_bootstrap(a, seed=4)
    with pytest.raises(ValueError, match="seeds x test examples"):
        stats.seeded_bootstrap([1.0, 2.0])
    with pytest.raises(ValueError, match="same examples"):
        stats.seeded_bootstrap(a, a[:, :5])
    with pytest.raises(ValueError, match="paired_seeds"):
        stats.seeded_bootstrap(a, a[:2], paired_seeds=True)
    with pytest.raises(ValueError, match="at least 2 test examples"):
        stats.seeded_bootstrap(a[:, :1])

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
        assert c.seeds == (4, 3) and not c.paired_seeds and c.seed_variance == "own"
        covered += c.low <= 2.0 <= c.high
    # conservative where two small-df seed parts weigh alike (see the coverage grid below)
    assert 0.93 <= covered / reps <= 1.0


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


def test_two_level_interval_is_banerjees_rule_on_the_random_effects_parts():
    # each part gets the t quantile of its own degrees of freedom: the seed means' variance
    # (k-1 df) and the example part less the residual noise already in the seed means (n-1 df)
    rng = np.random.default_rng(5)
    k, n = 4, 50
    d = rng.normal(0, 2.0, (k, 1)) + rng.normal(0, 1.0, (1, n)) + rng.normal(0, 3.0, (k, n))
    c = stats.seeded_bootstrap(d, np.zeros_like(d), paired_seeds=True)
    seed_means, ex_means, grand = d.mean(1), d.mean(0), d.mean()
    ms_seed = n * ((seed_means - grand) ** 2).sum() / (k - 1)
    ms_ex = k * ((ex_means - grand) ** 2).sum() / (n - 1)
    resid = d - seed_means[:, None] - ex_means[None, :] + grand
    ms_resid = (resid**2).sum() / ((k - 1) * (n - 1))
    seed_part, example_part = ms_seed / (k * n), max(ms_ex - ms_resid, 0.0) / (k * n)
    t = scipy_stats.t.ppf
    half = np.sqrt(t(0.975, k - 1) ** 2 * seed_part + t(0.975, n - 1) ** 2 * example_part)
    assert (c.high - c.low) / 2 == pytest.approx(half, rel=1e-9)
    assert c.diff == pytest.approx(d.mean()) and c.seed_variance == "own"
    # unbiased total: the old rule's bootstrap variance (seed_var/k + example_var/n + residual/(k n))
    assert seed_part + example_part == pytest.approx((ms_seed + ms_ex - ms_resid) / (k * n))
    # with the seed part alone, the rule is Student's t on the seed means
    only_seeds = np.array([[1.0], [2.0], [4.0]]) + np.zeros((3, 20))
    c = stats.seeded_bootstrap(only_seeds, np.zeros_like(only_seeds), paired_seeds=True)
    m = only_seeds.mean(1)
    assert c.p_value == pytest.approx(2 * scipy_stats.t.sf(m.mean() / (m.std(ddof=1) / np.sqrt(3)), 2), rel=1e-6)


def test_two_level_interval_and_p_value_always_agree():
    rng = np.random.default_rng(8)
    for rep in range(150):
        k_a, k_b = rng.integers(1, 5, 2)
        k_b = k_b if k_a > 1 else max(k_b, 2)
        a = rng.normal(0, 1, (k_a, 40)) + rng.normal(0, 0.7, (k_a, 1)) + rng.uniform(0, 1.2)
        b = rng.normal(0, 1, (k_b, 40)) + rng.normal(0, 0.7, (k_b, 1))
        for confidence in (0.95, 0.99):
            c = stats.seeded_bootstrap(a, b, confidence=confidence)
            assert (c.low > 0 or c.high < 0) == (c.p_value < 1 - confidence)
            assert c.low <= c.diff <= c.high and 0 < c.p_value <= 1


def test_one_seed_side_borrows_a_seed_variance_and_says_so():
    rng = np.random.default_rng(3)
    a, b = seeded_pair(rng, 3, 50, 1.0)
    one = stats.seeded_bootstrap(a[:1], b)  # one seed against three: the other side's seed variance
    assert (one.interval, one.seed_variance, one.seeds) == ("seeds+examples", "other side", (1, 3))
    own_b = stats.seeded_bootstrap(b)
    assert one.high - one.low > own_b.high - own_b.low  # b's seed variance counted for both sides
    pooled = stats.seeded_bootstrap(a[:1], b, pooled_seed_var=(4.0, 10))
    assert pooled.seed_variance == "pooled" and pooled.interval == "seeds+examples"
    t = scipy_stats.t.ppf
    # the pooled part is 4.0 (one seed) with 10 df, next to b's own seed means over 3 seeds
    expected = t(0.975, 10) ** 2 * 4.0 + t(0.975, 2) ** 2 * b.mean(1).var(ddof=1) / 3
    assert ((pooled.high - pooled.low) / 2) ** 2 > expected  # plus the example part
    # one seed on both sides and nothing to borrow: examples only, and it says so
    both = stats.seeded_bootstrap(a[:1], b[:1])
    assert (both.interval, both.seed_variance) == ("examples", "none")
    both = stats.seeded_bootstrap(a[:1], b[:1], paired_seeds=True, pooled_seed_var=(4.0, 10))
    assert (both.interval, both.seed_variance, both.paired_seeds) == ("seeds+examples", "pooled", False)
    lone = stats.seeded_bootstrap(a[:1], b, paired_seeds=True)  # one seed cannot be paired: as unpaired
    assert lone == stats.seeded_bootstrap(a[:1], b) and not lone.paired_seeds
    with pytest.raises(ValueError, match="pooled_seed_var"):
        stats.seeded_bootstrap(a[:1], b, pooled_seed_var=(-1.0, 3))


def test_p_value_adjustments():
    p = [0.01, 0.04, 0.03, 0.005]
    assert stats.adjust_p_values(p, "none") == p
    assert stats.adjust_p_values(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    # Holm: 4 x 0.005, 3 x 0.01, max(2 x 0.03, so far), max(1 x 0.04, so far)
    assert stats.adjust_p_values(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.adjust_p_values([0.5, 0.9], "bonferroni") == [1.0, 1.0] and stats.adjust_p_values([], "holm") == []
    with pytest.raises(ValueError, match="holm, bonferroni, none"):
        stats.adjust_p_values(p, "fdr")


# -- coverage by simulation: the protocol's promise at the 2-3 seeds users can afford ---------

SETTINGS = {"seed-dominated": 0.9, "balanced": 0.5, "example-dominated": 0.1}  # seed level's share


def simulated(rng, reps, k_a, k_b, n, seed_share, paired, delta=1.0):
    """`reps` datasets whose mean difference has variance 1: `seed_share` of it at the seed
    level (half seed effects, half seed x example noise), the rest method x example effects."""
    common = rng.normal(30.0, 10.0, (reps, 1, n))  # per-example difficulty, shared by both methods
    if paired:
        y = common + rng.normal(0, 2.0, (reps, k_a, 1)) + rng.normal(0, 3.0, (reps, k_a, n))
        d = (delta + np.sqrt((1 - seed_share) * n) * rng.standard_normal((reps, 1, n))
             + np.sqrt(seed_share / 2 * k_a) * rng.standard_normal((reps, k_a, 1))
             + np.sqrt(seed_share / 2 * k_a * n) * rng.standard_normal((reps, k_a, n)))
        return y + d, y
    h = 1 / k_a + 1 / k_b

    def side(k):
        return (common + np.sqrt(n * (1 - seed_share) / 2) * rng.standard_normal((reps, 1, n))
                + np.sqrt(seed_share / 2 / h) * rng.standard_normal((reps, k, 1))
                + np.sqrt(n * seed_share / 2 / h) * rng.standard_normal((reps, k, n)))
    return side(k_a) + delta, side(k_b)


GRID = ([(k, k, paired) for k in (2, 3, 5) for paired in (True, False)] + [(1, 3, False), (3, 1, False)])


@pytest.mark.parametrize("k_a,k_b,paired", GRID)
def test_two_level_coverage_is_at_least_nominal(k_a, k_b, paired):
    """1000 simulated datasets per setting (vectorised: the same parts `seeded_bootstrap` uses),
    for seed-dominated, balanced and example-dominated variance at 60 and 200 examples."""
    reps = 1000
    rng = np.random.default_rng(1000 * k_a + 10 * k_b + paired)
    t_containment = scipy_stats.t.ppf(0.975, min(k for k in (k_a, k_b) if k >= 2) - 1)  # one df for the total
    for n in (60, 200):
        for name, share in SETTINGS.items():
            x, y = simulated(rng, reps, k_a, k_b, n, share, paired)
            level = stats.two_level_parts(x, y, paired)
            half = level.half_width(0.95)
            coverage = np.mean(np.abs(level.diff - 1.0) <= half)
            where = f"{k_a} vs {k_b} seeds, {'paired' if paired else 'unpaired'}, n={n}, {name}"
            assert coverage >= 0.93, f"coverage {coverage:.3f}: {where}"
            # not trivially wide: never wider on average than the containment rule would be
            # with the true variance (1), and close to the oracle z-interval when examples dominate
            assert half.mean() <= 1.05 * t_containment, where
            if name == "example-dominated":
                assert half.mean() <= (2.5 if min(k_a, k_b) == 2 else 1.3) * 1.96, where
            if paired and k_a >= 3:
                assert coverage <= 0.99, f"coverage {coverage:.3f}: {where}"


def test_the_public_function_matches_the_simulated_parts():
    rng = np.random.default_rng(12)
    for k_a, k_b, paired in GRID:
        x, y = simulated(rng, 3, k_a, k_b, 60, 0.5, paired)
        level = stats.two_level_parts(x, y, paired)
        for r in range(3):
            c = stats.seeded_bootstrap(x[r], y[r], paired_seeds=paired)
            assert c.diff == pytest.approx(level.diff[r])
            assert (c.high - c.low) / 2 == pytest.approx(level.half_width(0.95)[r])


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

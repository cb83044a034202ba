"""Seed statistics and paired comparisons over examples.

Two methods evaluated on the same examples are compared example by example:
`a[i]` and `b[i]` are the per-example scores of each method on example i,
already averaged over generation seeds. Pairing removes the between-example
variance (some prompts are just hard), which is most of the variance.

- `paired_bootstrap` resamples examples with replacement and gives a percentile
  confidence interval for mean(a - b). Its `p_value` is the paired sign-flip
  permutation test's (`paired_permutation`), run with the same seed and number of
  resamples: under "no difference" each a[i] - b[i] is as likely positive as
  negative, so flipping signs gives the exact null distribution, while p-values
  read off a bootstrap distribution run a little small on few examples.
- `seeded_bootstrap` is the two-level version for methods trained with several
  training seeds, where the seed-to-seed spread is often larger than the
  example-to-example one (see its docstring).
- Intervals and p-values are random only through `seed`: same inputs and seed,
  same numbers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Resamples are drawn in blocks of about this many numbers, so memory stays
# bounded (a few tens of MB) for any number of examples.
_BLOCK = 1 << 21


@dataclass(frozen=True)
class Comparison:
    """mean(a - b), its interval [low, high], a two-sided p-value and the number of
    examples. `interval` says what was resampled: "examples" (percentile bootstrap,
    sign-flip p-value) or "seeds+examples" (`seeded_bootstrap`); `seeds` is the number
    of training seeds of a and b; `paired_seeds` whether they were compared seed by seed."""

    diff: float
    low: float
    high: float
    p_value: float
    n: int
    interval: str = "examples"
    seeds: tuple[int, int] = (1, 1)
    paired_seeds: bool = False


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation with ddof=1, n); std is 0.0 when n < 2 and
    the mean is NaN when there are no values."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return math.nan, 0.0, 0
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n >= 2 else 0.0
    return mean, std, n


def _paired_differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"a and b must be 1-d and the same length, got {x.shape} and {y.shape}")
    if x.size == 0:
        raise ValueError("no examples to compare")
    if not np.all(np.isfinite(x - y)):
        raise ValueError("scores must be finite")
    return x - y


def _blocks(n_resamples: int, n: int):
    rows = max(1, _BLOCK // n)
    for start in range(0, n_resamples, rows):
        yield min(rows, n_resamples - start)


def bootstrap_means(d: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_resamples` resamples (with replacement) of `d`."""
    n = d.size
    out = [d[rng.integers(0, n, size=(rows, n))].mean(axis=1) for rows in _blocks(n_resamples, n)]
    return np.concatenate(out)


def paired_permutation(
    a: Sequence[float], b: Sequence[float], n_resamples: int = 2000, seed: int = 0
) -> float:
    """Two-sided p-value of the paired sign-flip permutation test of mean(a - b) = 0.

    With at most log2(n_resamples) examples all 2**n sign patterns are enumerated
    and the p-value is exact; otherwise it is (1 + #{|mean*| >= |mean|}) / (1 + R)
    over R random sign patterns, which never returns 0.
    """
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    d = _paired_differences(a, b)
    n = d.size
    observed = abs(d.mean())
    # Sums of the same numbers in another order can differ in the last bits:
    # count those as ties, not as smaller.
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if 2**n <= n_resamples:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        means = np.abs(((1 - 2 * patterns) * d).mean(axis=1))
        return float(np.mean(means >= observed - tol))
    rng = np.random.default_rng(seed)
    hits = 0
    for rows in _blocks(n_resamples, n):
        signs = rng.integers(0, 2, size=(rows, n)) * 2 - 1
        hits += int(np.count_nonzero(np.abs((signs * d).mean(axis=1)) >= observed - tol))
    return (1 + hits) / (1 + n_resamples)


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Compare two methods on the same examples (see the module docstring).

    `diff` is mean(a - b); [low, high] is the percentile bootstrap interval at
    `confidence`; `p_value` comes from `paired_permutation(a, b, n_resamples, seed)`.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    d = _paired_differences(a, b)
    means = bootstrap_means(d, n_resamples, np.random.default_rng(seed))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Comparison(
        diff=float(d.mean()),
        low=float(low),
        high=float(high),
        p_value=paired_permutation(a, b, n_resamples=n_resamples, seed=seed),
        n=int(d.size),
    )


# -- two levels: training seeds and test examples ------------------------------------------

@dataclass
class _Side:
    """One method's seeds x examples scores split into seed effects, example means and
    seed x example residuals (two-way ANOVA), with the variance of each part."""

    sign: float
    k: int
    seed_effects: np.ndarray  # (k,), scaled so their mean square is the seed variance
    residuals: np.ndarray  # (k, n), scaled so their mean square is the residual variance
    example_means: np.ndarray  # (n,)
    seed_var: float
    residual_var: float


def _side(x: np.ndarray, sign: float) -> _Side:
    k, n = x.shape
    grand = x.mean()
    seed_means, example_means = x.mean(axis=1), x.mean(axis=0)
    if k < 2:  # one seed: its noise is part of the example term, no seed term
        return _Side(sign, 1, np.zeros(1), np.zeros((1, n)), example_means, 0.0, 0.0)
    a = seed_means - grand
    e = x - seed_means[:, None] - example_means[None, :] + grand
    ms_seed = n * float(a @ a) / (k - 1)
    ms_resid = float((e * e).sum()) / ((k - 1) * (n - 1))
    seed_var = max(0.0, (ms_seed - ms_resid) / n)  # method of moments, clipped at 0
    return _Side(sign, k, _rescale(a, seed_var), _rescale(e, ms_resid), example_means, seed_var, ms_resid)


def _rescale(effects: np.ndarray, variance: float) -> np.ndarray:
    """Effects rescaled so that their mean square is `variance` (zero stays zero)."""
    square = float((effects * effects).mean())
    return effects * math.sqrt(variance / square) if square > 0 else effects * 0.0


def _as_matrix(x, name: str) -> np.ndarray:
    m = np.asarray(x, dtype=float)
    if m.ndim != 2 or m.shape[0] < 1:
        raise ValueError(f"{name} must be a 2-d array of training seeds x test examples, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name}: scores must be finite")
    return m


def _draw_counts(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """(rows, n): how often each of n items is drawn in each of `rows` resamples of size n."""
    idx = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(float)


def seeded_bootstrap(
    a,
    b=None,
    *,
    paired_seeds: bool = False,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Compare two methods, each scored as training seeds x test examples, resampling both.

    `a` and `b` are 2-d arrays (seeds x examples) with the same examples in the same
    columns; `b=None` gives the interval of a's own mean. With `paired_seeds` the two
    share their seeds row by row (same seed, same data order and initialisation) and
    the comparison is made on the per-seed differences; otherwise each method's seeds
    are resampled independently, while examples are always resampled jointly.

    The scores are split as grand mean + seed effect + example effect + residual (a
    two-way random-effects model; each method on its own, or the difference when
    paired). Each resample draws seeds and examples with replacement and adds up the
    drawn effects, each level's effects rescaled to that level's estimated variance
    (method of moments): resampling raw effects would shrink the seed variance by
    (k-1)/k and count the residual noise three times (once in the seed means, once
    in the example means, once itself). The bootstrap therefore has the unbiased
    variance of the mean, var_seed/k + var_example/n + var_residual/(k n).

    With 2 to 5 seeds a percentile interval is far too narrow (its tails are the
    normal's where Student's t with k-1 degrees of freedom is right), so the interval
    is diff ± t * SE and the p-value is Student's t for diff / SE, where SE is the
    bootstrap standard error and t has the Welch-Satterthwaite degrees of freedom of
    the three variance parts: about k-1 when seeds dominate, about n-1 when examples
    do. Interval and p-value always agree (the interval excludes 0 iff p < 1 - confidence).
    """
    from scipy import stats as scipy_stats

    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    if n_resamples < 2:
        raise ValueError("n_resamples must be >= 2")
    x = _as_matrix(a, "a")
    y = None if b is None else _as_matrix(b, "b")
    if y is not None and y.shape[1] != x.shape[1]:
        raise ValueError(f"a and b must score the same examples, got {x.shape[1]} and {y.shape[1]} columns")
    if paired_seeds and (y is None or y.shape != x.shape):
        raise ValueError("paired_seeds needs b with the same seeds x examples shape as a")
    n = x.shape[1]
    if n < 2:
        raise ValueError("need at least 2 test examples")
    sides = [_side(x - y, 1.0)] if paired_seeds else [_side(x, 1.0)] + ([] if y is None else [_side(y, -1.0)])
    diff = float((x - y).mean()) if paired_seeds else float(x.mean()) - (0.0 if y is None else float(y.mean()))
    example_means = sum(s.sign * s.example_means for s in sides)
    b_eff = example_means - example_means.mean()
    # var(example means) = var_example + sum(var_residual / k): take the residual part out
    example_var = max(0.0, float(b_eff @ b_eff) / (n - 1) - sum(s.residual_var / s.k for s in sides))
    b_eff = _rescale(b_eff, example_var)

    rng = np.random.default_rng(seed)
    draws = []
    for rows in _blocks(n_resamples, n * (1 + sum(s.k for s in sides))):
        ex = _draw_counts(rng, rows, n)
        total = ex @ b_eff / n
        for s in sides:
            sd = _draw_counts(rng, rows, s.k)
            total = total + s.sign * (sd @ s.seed_effects / s.k + ((sd @ s.residuals) * ex).sum(axis=1) / (s.k * n))
        draws.append(total)
    se = float(np.concatenate(draws).std(ddof=1))

    # A seed mean carries the residual noise of its row: seed_var/k + residual_var/(k n) is
    # that side's between-seed mean square over k n, known only to k-1 degrees of freedom.
    parts = [(s.seed_var / s.k + s.residual_var / (s.k * n), s.k - 1) for s in sides if s.k >= 2]
    parts.append((example_var / n, n - 1))
    total_var = sum(v for v, _ in parts)
    df = total_var**2 / sum(v * v / d for v, d in parts) if total_var > 0 else float(n - 1)
    if se == 0.0:
        low = high = diff
        p_value = 1.0 if diff == 0.0 else 0.0
    else:
        half = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, df)) * se
        low, high = diff - half, diff + half
        p_value = float(2.0 * scipy_stats.t.sf(abs(diff) / se, df))
    k_b = 0 if y is None else y.shape[0]
    return Comparison(diff=diff, low=low, high=high, p_value=p_value, n=n, interval="seeds+examples",
                      seeds=(x.shape[0], k_b), paired_seeds=paired_seeds)

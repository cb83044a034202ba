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
    """mean(a - b), its percentile interval [low, high], a two-sided p-value
    (sign-flip permutation test) and the number of examples."""

    diff: float
    low: float
    high: float
    p_value: float
    n: int


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

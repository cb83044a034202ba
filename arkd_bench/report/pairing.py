"""Per-example scores of leaderboard rows, and the small statistics built on them.

Any two rows evaluated on the same test set can be paired example by example; pairing
(rather than comparing two means) removes the between-example variance. A row trained
with several seeds keeps its scores per seed, so its intervals cover training seeds as
well as test examples (`evaluate.stats.seeded_bootstrap`). A row of one seed has no seed
variance of its own: given one pooled over the other rows of its grid (`pool_seed_variance`,
assuming methods share a seed variance) it is used; without one, a comparison of two
one-seed rows covers test examples only.
"""
from __future__ import annotations

import math
from collections import defaultdict

ExampleScores = dict[str, dict[int, float]]  # metric -> example index -> score
SeedScores = dict[int, dict[int, float]]  # training seed -> example index -> score

EXAMPLES = "examples"  # what an interval resamples
SEEDS_AND_EXAMPLES = "seeds+examples"


def average_seeds(runs: list[ExampleScores], metric: str) -> dict[int, float]:
    """Example -> mean over the runs (training seeds) that scored it."""
    sums: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for i, v in run.get(metric, {}).items():
            sums[i].append(v)
    return {i: sum(v) / len(v) for i, v in sums.items()}


def by_seed(runs: list[tuple[int, ExampleScores]], metric: str) -> SeedScores:
    """Training seed -> example -> score, from (seed, scores) of a row's cells; two cells
    of one seed (merged runs) are averaged."""
    grouped: dict[int, list[ExampleScores]] = defaultdict(list)
    for seed, scores in runs:
        if scores.get(metric):
            grouped[seed].append(scores)
    return {seed: average_seeds(cells, metric) for seed, cells in sorted(grouped.items())}


def _matrix(scores: SeedScores, examples: list[int]):
    import numpy as np

    return np.asarray([[scores[s][i] for i in examples] for s in sorted(scores)], dtype=float)


def _common_examples(*rows: SeedScores) -> list[int]:
    """Examples scored by every seed of every row."""
    sets = [set(by_example) for row in rows for by_example in row.values()]
    return sorted(set.intersection(*sets)) if sets else []


def seed_mean_variance(scores: SeedScores) -> tuple[float, int] | None:
    """(sample variance of the row's seed means over the examples all its seeds scored,
    its degrees of freedom k - 1), or None under 2 seeds or 2 common examples."""
    if len(scores) < 2:
        return None
    examples = _common_examples(scores)
    if len(examples) < 2:
        return None
    return float(_matrix(scores, examples).mean(axis=1).var(ddof=1)), len(scores) - 1


def pool_seed_variance(estimates: list[tuple[float, int]]) -> tuple[float, int, int] | None:
    """(pooled variance of one seed's mean, degrees of freedom, number of rows) from
    `seed_mean_variance` of several rows: the df-weighted mean, as in a pooled t-test."""
    if not estimates:
        return None
    df = sum(d for _, d in estimates)
    return sum(v * d for v, d in estimates) / df, df, len(estimates)


def compare_rows(a: SeedScores, b: SeedScores, seed: int = 0, pooled: tuple[float, int] | None = None):
    """Comparison of a - b over the test examples both score (None under 2 examples).

    Both rows of one seed and no `pooled` seed variance: the seed-averaged paired bootstrap
    over examples. Otherwise the two-level interval over seeds and examples, paired by seed
    when both rows have the same 2+ seeds, each row's seeds on their own when not; a
    one-seed side takes `pooled` = (variance of one seed's mean, df) when given, else the
    other side's seed variance (`Comparison.seed_variance` says which)."""
    from arkd_bench.evaluate.stats import paired_bootstrap, seeded_bootstrap

    if not a or not b:
        return None
    one_seed = len(a) == 1 or len(b) == 1
    if len(a) == 1 and len(b) == 1 and pooled is None:
        x, y = paired(next(iter(a.values())), next(iter(b.values())))
        return paired_bootstrap(x, y, seed=seed) if len(x) >= 2 else None
    examples = _common_examples(a, b)
    if len(examples) < 2:
        return None
    return seeded_bootstrap(_matrix(a, examples), _matrix(b, examples),
                            paired_seeds=sorted(a) == sorted(b) and not one_seed, seed=seed,
                            pooled_seed_var=pooled if one_seed else None)


def row_interval(scores: SeedScores, confidence: float = 0.95, seed: int = 0,
                 pooled: tuple[float, int] | None = None) -> dict:
    """{low, high, interval, seed_variance} of a row's mean: over seeds and examples with 2+
    seeds (or one seed and a `pooled` seed variance), over examples alone with one ({} when
    there is nothing to resample)."""
    from arkd_bench.evaluate.stats import seeded_bootstrap

    if len(scores) == 1 and pooled is None:
        found = example_interval(next(iter(scores.values())), confidence, seed)
        return {**found, "interval": EXAMPLES, "seed_variance": "none"} if found else {}
    examples = _common_examples(scores)
    if len(examples) < 2:
        return {}
    c = seeded_bootstrap(_matrix(scores, examples), confidence=confidence, seed=seed,
                         pooled_seed_var=pooled if len(scores) == 1 else None)
    return {"low": c.low, "high": c.high, "interval": c.interval, "seed_variance": c.seed_variance}


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[list[float], list[float]]:
    """Scores of the examples both have, in example order."""
    common = sorted(set(a) & set(b))
    return [a[i] for i in common], [b[i] for i in common]


def example_interval(scores: dict[int, float], confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """{low, high}: percentile bootstrap interval of the mean over examples ({} under 2 examples)."""
    import numpy as np

    from arkd_bench.evaluate.stats import bootstrap_means

    if len(scores) < 2:
        return {}
    values = np.asarray([scores[i] for i in sorted(scores)], dtype=float)
    means = bootstrap_means(values, 2000, np.random.default_rng(seed))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {"low": float(low), "high": float(high)}


def rank_values(values: list[float | None], higher_is_better: bool) -> list[int | None]:
    """Competition ranks (1, 2, 2, 4): ties share a rank; missing or NaN values get None."""
    valid = [v for v in values if v is not None and not math.isnan(v)]
    ranks = []
    for v in values:
        if v is None or math.isnan(v):
            ranks.append(None)
        else:
            better = sum((w > v) if higher_is_better else (w < v) for w in valid)
            ranks.append(better + 1)
    return ranks

"""Per-example scores of leaderboard rows, and the small statistics built on them.

Any two rows evaluated on the same test set can be paired example by example; pairing
(rather than comparing two means) removes the between-example variance.
"""
from __future__ import annotations

import math
from collections import defaultdict

ExampleScores = dict[str, dict[int, float]]  # metric -> example index -> score


def average_seeds(runs: list[ExampleScores], metric: str) -> dict[int, float]:
    """Example -> mean over the runs (training seeds) that scored it."""
    sums: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for i, v in run.get(metric, {}).items():
            sums[i].append(v)
    return {i: sum(v) / len(v) for i, v in sums.items()}


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

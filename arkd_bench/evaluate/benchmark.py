"""Metrics that bring their own test items: a benchmark (e.g. an lm-evaluation-harness task)
run on the evaluated model, instead of a score per example of the recipe's dataset.

A benchmark metric implements `score_benchmark(model, tokenizer)` and returns, per
leaderboard column, one score per item of its benchmark (`BenchmarkScores`). The items
are the benchmark's, the same for every cell, so rows are compared item by item exactly as
dataset metrics are compared example by example: each item is written to the cell's
`generations.jsonl` as a record of its own (`benchmark` names its column, `example` is the
item's index in the benchmark, `seed` is None), which is where the leaderboard's intervals
and paired comparisons read per-example scores from. What the benchmark tool itself
reported (its value, its standard error, its item count) is kept in `scores.json` under
`benchmarks`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from arkd_bench.evaluate.base import ModelMetric, checked_scores


@dataclass
class BenchmarkScores:
    """One column of a benchmark metric: a score per item, what each item was, and what the
    benchmark tool reported for the whole column."""

    scores: list[float]
    # per item, as a generation record shows it: {"prompt", "prediction", "references"}
    items: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)  # e.g. {"mean", "stderr", "n"} as the tool gave them


class BenchmarkMetric(ModelMetric):
    """Base of model metrics scored on a benchmark's own items (not the dataset's examples).

    `score_benchmark` runs once per evaluated model (the teacher and every trained student;
    the model-free baselines have none) and returns {column: BenchmarkScores}; each column
    is a leaderboard metric of its own.
    """

    own_items: ClassVar[bool] = True

    def score_benchmark(self, model: Any, tokenizer: Any) -> dict[str, BenchmarkScores]:
        raise NotImplementedError

    def score_models(self, student, teacher, tokenizer, examples) -> list[float]:
        raise TypeError(f"{self.name} scores a benchmark's own items: call score_benchmark(model, tokenizer)")


def is_benchmark(metric: Any) -> bool:
    return bool(getattr(metric, "own_items", False))


def score_benchmarks(model, tokenizer, metrics: Sequence[Any], taken: Sequence[str] = ()):
    """(column -> checked per-item scores, records for generations.jsonl, column -> summary)
    of the benchmark metrics. A column named like another metric or column is refused: its
    per-example scores would be merged with the other's."""
    from arkd_bench.plugins.output import PluginOutputError, name_of

    scores: dict[str, list[float]] = {}
    records: list[dict[str, Any]] = []
    summaries: dict[str, dict[str, Any]] = {}
    seen = set(taken)
    for metric in metrics:
        for column, found in metric.score_benchmark(model, tokenizer).items():
            if column in seen:
                raise PluginOutputError("metric", name_of(metric), type(metric), "score_benchmark",
                                        f"column {column!r} is already a metric of this evaluation")
            seen.add(column)
            if len(found.items) != len(found.scores):
                raise PluginOutputError("metric", name_of(metric), type(metric), "score_benchmark",
                                        f"column {column!r}: {len(found.items)} items for {len(found.scores)} scores")
            values = checked_scores(metric, found.scores, len(found.items), "score_benchmark")
            scores[column] = values
            summaries[column] = {"metric": metric.name, **found.summary}
            for i, (item, value) in enumerate(zip(found.items, values)):
                records.append({"benchmark": column, "example": i, "seed": None,
                                "prompt": item.get("prompt", ""), "prediction": item.get("prediction", ""),
                                "references": list(item.get("references", [])), "scores": {column: value}})
    return scores, records, summaries

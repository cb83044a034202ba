"""Evaluate one model: generate for every test prompt (once greedy, or once per
generation seed when sampling) and score every example with every metric.

Text metrics score each seed's generations. Model metrics (`needs_models`) score
the models themselves, teacher-forced, so they run once per cell; their
per-example values are copied into every generation record of that example, so
averaging a record's scores over seeds (what the leaderboard does) gives them
back unchanged and the paired statistics pair them like any other metric.

Benchmark metrics (`evaluate.benchmark`, e.g. `lm_eval`) score the model on their own items,
once per cell; each of their columns gets records of its own (one per item, `benchmark` set)
beside the generation records, and the tool's own summary lands under `benchmarks`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from arkd_bench.evaluate.base import checked_scores
from arkd_bench.evaluate.ranks import Ranks

MODEL_KEY = "teacher_forced"  # the per_seed entry of a model metric (it has no generation seed)


@dataclass
class Evaluation:
    """Per-example scores for each generation seed, and their summary."""

    records: list[dict[str, Any]] = field(default_factory=list)  # one per (seed, example)
    per_seed: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> seed -> mean
    metrics: dict[str, float] = field(default_factory=dict)  # metric -> mean over seeds
    settings: dict[str, Any] = field(default_factory=dict)
    benchmarks: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> what its tool reported

    def scores(self) -> dict[str, Any]:
        out = {"metrics": self.metrics, "per_seed": self.per_seed, "settings": self.settings}
        if self.benchmarks:
            out["benchmarks"] = self.benchmarks
        return out


def evaluate_model(
    model,
    tokenizer,
    examples: Sequence,
    metrics: Sequence,
    settings,
    *,
    teacher=None,
    fixed_predictions: Sequence[str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    ranks: Ranks | None = None,
) -> Evaluation | None:
    """`teacher` is what model metrics compare `model` with (None: those that need it raise).

    `fixed_predictions` scores given texts instead of generating (trivial baselines such as
    echoing the prompt): there is no model, so only text metrics apply.

    `ranks` shares the model's work among a run's processes (all of them call this together):
    each generates and teacher-forces its shard of the examples, and the main process scores
    them all and returns the Evaluation; the others return None."""
    from arkd_bench.evaluate.benchmark import is_benchmark, score_benchmarks

    ranks = ranks if ranks is not None and fixed_predictions is None else Ranks()
    prompts = [e.prompt for e in examples]
    references = [list(e.references) for e in examples]
    seeds = settings.effective_seeds() if fixed_predictions is None else [None]
    text_metrics = [m for m in metrics if not getattr(m, "needs_models", False)]
    model_metrics = [m for m in metrics if getattr(m, "needs_models", False)] if model is not None else []
    benchmarks = [m for m in model_metrics if is_benchmark(m)] if ranks.main else []
    model_metrics = [m for m in model_metrics if not is_benchmark(m)]
    bench_scores, bench_records, bench_summaries = score_benchmarks(model, tokenizer, benchmarks,
                                                                    taken=[m.name for m in metrics])
    model_scores, generations = _per_example(model, teacher, tokenizer, examples, model_metrics, settings, seeds,
                                             fixed_predictions, ranks, on_progress)
    if not ranks.main:
        return None
    # Greedy decoding uses no seed: recording the default 10..50 would claim otherwise.
    generation = settings.model_dump(exclude=set() if settings.do_sample else {"seeds"})
    result = Evaluation(settings={
        "generation": generation,
        "seeds_used": seeds,
        "examples": len(examples),
        "metrics": {m.name: m.settings() for m in metrics},
    })
    for name, values in {**model_scores, **bench_scores}.items():
        result.per_seed[name] = {MODEL_KEY: _mean(values)}
    result.benchmarks = bench_summaries
    for seed, predictions in zip(seeds, generations):
        scores = {m.name: checked_scores(m, m.score(predictions, references), len(predictions))
                  for m in text_metrics}
        key = "greedy" if seed is None else str(seed)
        for metric_name, values in scores.items():
            result.per_seed.setdefault(metric_name, {})[key] = _mean(values)
        scores.update(model_scores)
        for i, prediction in enumerate(predictions):
            result.records.append({
                "example": i, "seed": seed, "prompt": prompts[i], "prediction": prediction,
                "references": references[i], "scores": {name: values[i] for name, values in scores.items()},
            })
    result.records += bench_records
    result.metrics = {name: sum(v.values()) / len(v) for name, v in result.per_seed.items()}
    return result


def _per_example(model, teacher, tokenizer, examples: Sequence, model_metrics: Sequence, settings, seeds,
                 fixed_predictions, ranks: Ranks, on_progress) -> tuple[dict[str, list[float]], list[list[str]]]:
    """The model metrics' per-example scores and each seed's predictions, in example order:
    this rank computes its shard, and the shards are joined (a no-op for one process)."""
    from arkd_bench.evaluate.generate import generate

    if fixed_predictions is not None:
        if on_progress is not None:
            on_progress(1, 1)
        return score_models(model, teacher, tokenizer, examples, model_metrics), [list(fixed_predictions)]
    mine = ranks.shard(len(examples))
    part = list(examples[mine.start:mine.stop])
    scores = score_models(model, teacher, tokenizer, part, model_metrics) if part else {}
    predictions = []
    for done, seed in enumerate(seeds):
        # sampled rows draw from generators seeded by the example's index in `examples`
        predictions.append(generate(model, tokenizer, [e.prompt for e in part], settings, seed=seed,
                                    first_index=mine.start))
        if on_progress is not None:
            on_progress(done + 1, len(seeds))
    rows = ranks.joined([({name: values[k] for name, values in scores.items()}, [p[k] for p in predictions])
                         for k in range(len(part))])
    model_scores = {m.name: [row[0][m.name] for row in rows] for m in model_metrics}
    return model_scores, [[row[1][s] for row in rows] for s in range(len(seeds))]


def score_models(model, teacher, tokenizer, examples: Sequence, metrics: Sequence) -> dict[str, list[float]]:
    """Per-example scores of the model metrics, sharing forward passes between them."""
    from arkd_bench.evaluate.teacher_forced import shared_passes

    out = {}
    with shared_passes():
        for m in metrics:
            out[m.name] = checked_scores(m, m.score_models(model, teacher, tokenizer, examples), len(examples),
                                         "score_models")
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / max(1, len(values))

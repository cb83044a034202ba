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
) -> Evaluation:
    """`teacher` is what model metrics compare `model` with (None: those that need it raise).

    `fixed_predictions` scores given texts instead of generating (trivial baselines such as
    echoing the prompt): there is no model, so only text metrics apply."""
    from arkd_bench.evaluate.benchmark import is_benchmark, score_benchmarks
    from arkd_bench.evaluate.generate import generate

    prompts = [e.prompt for e in examples]
    references = [list(e.references) for e in examples]
    seeds = settings.effective_seeds() if fixed_predictions is None else [None]
    text_metrics = [m for m in metrics if not getattr(m, "needs_models", False)]
    model_metrics = [m for m in metrics if getattr(m, "needs_models", False)] if model is not None else []
    benchmarks = [m for m in model_metrics if is_benchmark(m)]
    model_metrics = [m for m in model_metrics if not is_benchmark(m)]
    model_scores = score_models(model, teacher, tokenizer, examples, model_metrics)
    bench_scores, bench_records, bench_summaries = score_benchmarks(model, tokenizer, benchmarks,
                                                                    taken=[m.name for m in metrics])
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
    for done, seed in enumerate(seeds):
        predictions = (list(fixed_predictions) if fixed_predictions is not None
                       else generate(model, tokenizer, prompts, settings, seed=seed))
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
        if on_progress is not None:
            on_progress(done + 1, len(seeds))
    result.records += bench_records
    result.metrics = {name: sum(v.values()) / len(v) for name, v in result.per_seed.items()}
    return result


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

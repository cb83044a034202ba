"""Evaluate one model: generate for every test prompt (once greedy, or once per
generation seed when sampling) and score every example with every metric."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Evaluation:
    """Per-example scores for each generation seed, and their summary."""

    records: list[dict[str, Any]] = field(default_factory=list)  # one per (seed, example)
    per_seed: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> seed -> mean
    metrics: dict[str, float] = field(default_factory=dict)  # metric -> mean over seeds
    settings: dict[str, Any] = field(default_factory=dict)

    def scores(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "per_seed": self.per_seed, "settings": self.settings}


def evaluate_model(
    model,
    tokenizer,
    examples: Sequence,
    metrics: Sequence,
    settings,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    from arkd_bench.evaluate.generate import generate

    prompts = [e.prompt for e in examples]
    references = [list(e.references) for e in examples]
    seeds = settings.effective_seeds()
    result = Evaluation(settings={
        "generation": settings.model_dump(),
        "seeds_used": seeds,
        "examples": len(examples),
        "metrics": {m.name: m.settings() for m in metrics},
    })
    for done, seed in enumerate(seeds):
        predictions = generate(model, tokenizer, prompts, settings, seed=seed)
        scores = {m.name: m.score(predictions, references) for m in metrics}
        key = "greedy" if seed is None else str(seed)
        for metric_name, values in scores.items():
            result.per_seed.setdefault(metric_name, {})[key] = sum(values) / max(1, len(values))
        for i, prediction in enumerate(predictions):
            result.records.append({
                "example": i, "seed": seed, "prompt": prompts[i], "prediction": prediction,
                "references": references[i], "scores": {name: values[i] for name, values in scores.items()},
            })
        if on_progress is not None:
            on_progress(done + 1, len(seeds))
    result.metrics = {name: sum(v.values()) / len(v) for name, v in result.per_seed.items()}
    return result

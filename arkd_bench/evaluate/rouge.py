"""Rouge-L as the MiniLLM family of papers reports it.

rouge-score's `RougeScorer(['rougeL'], use_stemmer=True)`, F-measure, the best
reference of each example, times 100. rougeL here is the sentence-level LCS
variant (not rougeLsum, which splits on newlines first).

Tokenisation is rouge-score's default, kept on purpose so numbers match published
ones: text is lower-cased, every character outside [a-z0-9] becomes a separator,
and words longer than 3 characters are Porter-stemmed ("running" and "runs" both
become "run"). A consequence to know about: non-ASCII letters are dropped, so
"café" scores as "caf" and text in a non-Latin script has no tokens at all and
scores 0. An empty prediction (or one with no ASCII word) also scores 0.
"""
from __future__ import annotations

from typing import Any, ClassVar

from arkd_bench.evaluate.base import Metric, check_inputs, package_version


class RougeL(Metric):
    """Rouge-L F-measure x 100, max over the references of each example."""

    name: ClassVar[str] = "rougeL"
    higher_is_better: ClassVar[bool] = True
    bounds = (0.0, 100.0)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._scorer = None

    def _get_scorer(self):
        if self._scorer is None:
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        return self._scorer

    def score(self, predictions: list[str], references: list[list[str]]) -> list[float]:
        check_inputs(predictions, references)
        scorer = self._get_scorer()
        # rouge-score's signature is score(target, prediction): the order matters
        # because precision and recall swap.
        return [
            100.0 * max(scorer.score(ref, pred)["rougeL"].fmeasure for ref in refs)
            for pred, refs in zip(predictions, references)
        ]

    def settings(self) -> dict[str, Any]:
        return {
            "metric": self.name,
            "package": "rouge-score",
            "version": package_version("rouge-score"),
            "rouge_type": "rougeL",
            "use_stemmer": True,
            "tokenizer": "rouge-score default (lower-case, [a-z0-9] tokens only, "
            "non-ASCII dropped)",
            "measure": "fmeasure",
            "references": "max over references",
            "scale": 100,
        }

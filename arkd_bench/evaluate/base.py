"""The Metric interface shared by builtin and third-party metrics.

A metric gives one number per test example: a text metric scores generated texts
against their references, a model metric (`needs_models = True`) scores the models
themselves, e.g. teacher-forced divergences. Per-example numbers (not just a
corpus mean) are what the statistics in `arkd_bench.evaluate.stats` need to
compare methods over the same examples.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import metadata
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from arkd_bench.plugins.options import NoOptions


class Metric:
    """Base class: subclass it, set `name`, optionally `Options`, implement `score`.

    `Metric(**options)` validates the options through `Options` (a pydantic model
    with extra="forbid"), so a typo in a recipe fails before any model is loaded.
    Heavy work (loading an embedding model) belongs in `score`, not `__init__`.

    Model metrics set `needs_models = True` and implement `score_models` instead of
    `score`: they see the evaluated model (`student`), the cell's teacher, the
    tokenizer and the test examples (with their `meta`), and return one number per
    example. They do not depend on generation, so they run once per cell, and their
    per-example scores are recorded with every generation record of that example.
    Import torch inside `score_models`, never at module level (the CLI starts
    without it).
    """

    name: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    # What a unit of the metric is: "percent" (x100 scores, a point is a unit), "nats" or
    # "count". CI tolerances follow it: a point for percentages, a share for nats.
    scale: ClassVar[Literal["percent", "nats", "count"]] = "percent"
    # The values the metric can take, (low, high), None where unbounded: reports clip a
    # mean's interval to it and a difference's to +-(high - low), so a 0-100 score's
    # interval never reads as reaching below 0.
    bounds: ClassVar[tuple[float | None, float | None]] = (None, None)
    # The value the metric takes by definition when the teacher is scored against itself
    # (0 for a divergence from the teacher): reports show `-` there instead of a measurement.
    teacher_value: ClassVar[float | None] = None
    needs_models: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, **options: Any) -> None:
        self.options = self.Options(**options)

    def score(self, predictions: list[str], references: list[list[str]]) -> list[float]:
        """One score per example; `references[i]` holds every reference of example i."""
        raise NotImplementedError

    def score_models(self, student: Any, teacher: Any, tokenizer: Any, examples: Sequence[Any]) -> list[float]:
        """One score per example from the models (`needs_models = True` metrics only).

        `teacher` is None when the caller has none; a metric that needs it raises.
        """
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Everything needed to reproduce the numbers: options, package versions, models."""
        return {"metric": self.name, "options": self.options.model_dump()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


class ModelMetric(Metric):
    """Base of metrics computed from the models themselves (teacher-forced), not from text."""

    needs_models: ClassVar[bool] = True

    def score(self, predictions: list[str], references: list[list[str]]) -> list[float]:
        raise TypeError(f"{self.name} is a model metric (needs_models): call score_models(student, teacher, "
                        "tokenizer, examples)")


def check_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    """Raise a clear error for the usual mistakes before scoring anything.

    The common one is passing `list[str]` references: a string is a sequence of
    characters, so without this check every character would count as a reference.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} reference lists"
        )
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str):
            raise TypeError(f"prediction {i} is {type(pred).__name__}, expected str")
        if isinstance(refs, str):
            raise TypeError(
                f"references[{i}] is a str; pass a list of references per example, "
                "e.g. [[ref] for ref in refs]"
            )
        if len(refs) == 0:
            raise ValueError(f"example {i} has no reference")
        for ref in refs:
            if not isinstance(ref, str):
                raise TypeError(f"a reference of example {i} is {type(ref).__name__}, expected str")


def checked_scores(metric: Metric, values: Any, n_examples: int, method: str = "score") -> list[float]:
    """A metric's per-example scores as floats, or a PluginOutputError naming the metric, its
    file and `method`: one finite number per example is the contract. A metric that does not
    apply to a dataset says so by raising (as the long-tail metrics do); NaN or inf is never
    taken for "not applicable", since every mean, interval and check would then be NaN."""
    from arkd_bench.plugins.output import PluginOutputError, name_of

    def fail(problem: str):
        return PluginOutputError("metric", name_of(metric), type(metric), method, problem)

    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__"):
        raise fail(f"expected a list of {n_examples} numbers (one per example), got {type(values).__name__}")
    if len(values) != n_examples:
        raise fail(f"{len(values)} scores for {n_examples} examples (one per example expected)")
    scores = []
    for i, value in enumerate(values):
        try:
            if isinstance(value, (str, bytes)):
                raise TypeError
            score = float(value)
        except (TypeError, ValueError):
            raise fail(f"score of example {i} is {type(value).__name__} {value!r:.60}, not a number") from None
        if not math.isfinite(score):
            bad = sum(1 for v in values if not _finite(v))
            raise fail(f"score of example {i} is {score} ({bad} of {n_examples} scores are not finite); a score "
                       "must be a finite number; raise an error saying why when the metric does not apply")
        scores.append(score)
    return scores


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def package_version(name: str) -> str:
    """Installed distribution version, read from metadata (never from `__version__`,
    which some packages forget to bump: bert-score 0.3.13 still says 0.3.12)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"

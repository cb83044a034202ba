"""The WeightingStrategy interface: how an objective's terms are mixed at each step.

A strategy sees the StepFeatures of the divergence pass and returns one weight per
objective term, per batch (shape [T]) or per token (shape [T, *token_shape]). After
the optimizer step the loop hands it a Feedback, from which an RL strategy builds a
reward. Strategies are importable without pluggy.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from arkd_bench.options import NoOptions

if TYPE_CHECKING:
    import torch

    from arkd_bench.divergences import StepFeatures


# What a strategy may ask the loop to measure for its feedback (see Feedback), and
# "trial": hypothetical updates from the pre-update state (see WeightingStrategy.before_update).
FEEDBACK_REQUESTS = frozenset({"probe", "batch_after", "rouge_probe", "trial"})
# What a divergence term may declare itself to be (Divergence.direction): forward-like terms
# cover the teacher's modes (FKL, skew FKL), reverse-like ones seek them (RKL, skew RKL).
DIRECTIONS = ("forward", "reverse")


@dataclass
class Feedback:
    """What the loop reports after each optimizer step.

    `probe_before`/`probe_after` are alignment criteria (batch means of fkl, rkl, tvd,
    ...) on a held-out probe batch measured just before and just after the student's
    update; they are filled only when the strategy requests "probe". `batch_before` and
    `batch_after` hold the same criteria on the step's training micro-batches just before
    and just after the update ("batch_after"). Every criterion is measured with the student
    in eval mode (no dropout), so two measurements at unchanged weights are identical.
    `rouge_probe` is a callable that generates on a validation probe and returns its
    mean Rouge-L ("rouge_probe"); it is costly, so the strategy decides when to call it.
    """

    step: int
    total_steps: int
    loss: float
    term_losses: dict[str, float]
    features: StepFeatures
    probe_before: dict[str, float] | None = None
    probe_after: dict[str, float] | None = None
    batch_before: dict[str, float] | None = None
    batch_after: dict[str, float] | None = None
    rouge_probe: Callable[[], float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialResult:
    """Criteria after a hypothetical update (batch means of fkl, rkl, tvd): on the probe
    batch when the strategy requests "probe", on the step's training batch when it requests
    "batch_after"; None otherwise."""

    probe: dict[str, float] | None = None
    batch: dict[str, float] | None = None


class WeightingStrategy:
    """Base class for weighting strategies (builtin and third-party).

    Subclasses set `name`, optionally an `Options` pydantic model (extra fields
    forbidden, validated at recipe load), and implement `weights`.

    `terms` are the objective's labels in recipe order; `directions`, when the loop knows
    them, say for each term whether its divergence declares itself "forward"-like,
    "reverse"-like or neither (None), so a strategy finds its FKL and RKL terms by what
    they are, not by their labels or order.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    # Subset of FEEDBACK_REQUESTS the loop must compute for `observe`.
    feedback_requests: ClassVar[frozenset[str]] = frozenset()
    # False when the requested criteria serve only the trial updates of `before_update`: the
    # loop then skips measuring them before and after the real update (two forwards a step).
    observes_criteria: ClassVar[bool] = True

    def __init__(self, terms: Sequence[str] = ("fkl", "rkl"), *,
                 directions: Sequence[str | None] | None = None, **options: Any) -> None:
        self.terms = list(terms)
        if directions is not None and len(directions) != len(self.terms):
            raise ValueError(f"{len(directions)} directions for {len(self.terms)} terms {self.terms}")
        self.directions = None if directions is None else list(directions)
        self.options = self.Options.model_validate(options)
        self.check_terms(self.terms)

    def check_terms(self, terms: list[str]) -> None:
        """Raise ValueError when this strategy cannot weight `terms`."""

    def weights(self, features: StepFeatures) -> torch.Tensor:
        """Weights of shape [T] or [T, *token_shape], T = len(self.terms)."""
        raise NotImplementedError

    def before_update(self, trial: Callable[[Sequence[float]], TrialResult]) -> torch.Tensor | None:
        """Called between backward and the optimizer step when the strategy requests "trial".

        `trial(weights)` applies the update the step would make with those per-batch weights
        (one per term) from the current state, measures the requested criteria in eval mode
        and restores the state exactly; each call costs one optimizer step and one forward of
        what it measures. Return new per-batch weights [T] to replace this step's update
        (the weights already returned by `weights` are then discarded), or None to keep it.
        """
        return None

    def observe(self, feedback: Feedback) -> None:
        """Called after each optimizer step; default: nothing to learn."""

    def log_scalars(self) -> dict[str, float]:
        """Scalars for the cell's training log (e.g. alpha, reward, policy entropy)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned, so a resumed run continues the strategy."""

"""The events the training loop tells its hooks about, and the step state they share.

A step's events, in order:
  on_step_begin          the micro-batches are drawn (a hook may replace them)
  on_backward_end        every micro-batch's forward and backward ran; weights the strategy gave
  on_pre_optimizer_step  the gradient the update uses may be replaced; clipping follows
  on_optimizer_step      the optimizer and scheduler stepped; next, the strategy observes
                         `Feedback(**state.feedback)` plus the step's loss and features
  on_step_end            after the strategy's observe
and once per run `on_train_begin` and `on_train_end` (the outcome holds the trained student).
`on_evaluate` and `on_log` are told by the hooks that evaluate and write log records.
A hook whose state a resumed run needs (train.checkpoint_every) returns it from `state_dict`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepState:
    """What one optimizer step has produced so far; hooks read it and add to it."""

    step: int
    micro_batches: list[Any]
    n_tokens: int = 0
    term_grads: Any = None  # each term's gradient kept apart (TermGradients), when a hook asks
    loss: float = 0.0
    term_losses: dict[str, float] = field(default_factory=dict)
    weights: Any = None
    features: Any = None
    feedback: dict[str, Any] = field(default_factory=dict)  # Feedback fields beyond loss and features
    dev: float | None = None  # the dev score, on steps that evaluate
    log_now: bool = False  # a hook wants this step logged whatever log_every says


class TrainingHook:
    """A side feature of the training loop; override the events it needs. Each event gets the
    loop (`TrainingLoop`: distiller, optimizer, scheduler, outcome, `fire`) first."""

    def on_train_begin(self, loop) -> None:
        """Before the first step; the student, optimizer and loader are prepared."""

    def on_step_begin(self, loop, state: StepState) -> None:
        """The step's micro-batches are drawn; nothing has run on them."""

    def on_backward_end(self, loop, state: StepState) -> None:
        """The step's gradient is accumulated; the weights have not moved."""

    def on_pre_optimizer_step(self, loop, state: StepState) -> None:
        """Just before the update: the gradient in `.grad` is the one it will use."""

    def on_optimizer_step(self, loop, state: StepState) -> None:
        """The update is done; the strategy has not yet observed the step."""

    def on_step_end(self, loop, state: StepState) -> None:
        """The strategy has observed the step."""

    def on_evaluate(self, loop, state: StepState, score: float) -> None:
        """The student was scored on the dev probe at this step."""

    def on_log(self, loop, state: StepState, record: dict[str, Any]) -> None:
        """A log record is being written; add fields to it, or pass it on."""

    def on_train_end(self, loop) -> None:
        """After the last step; `loop.outcome.student` is the unwrapped student."""

    def state_dict(self) -> dict[str, Any] | None:
        """What a checkpoint keeps of this hook, or None (nothing: it starts afresh on resume)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned, before the resumed loop's first step."""

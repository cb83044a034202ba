"""The training log: a record every `train.log_every` steps (and at the last step, and whenever
a hook asks), which the other hooks extend at `on_log` before it is kept and handed to the
caller's `on_log` (progress bars, trackers)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arkd_bench.train.hooks.base import StepState, TrainingHook


class LogRecords(TrainingHook):
    """Writes the step's record; comes last, so every other hook has added its fields."""

    def __init__(self, on_log: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.callback = on_log

    def on_step_end(self, loop, state: StepState) -> None:
        step, train = state.step, loop.train
        if step % train.log_every == 0 or step == train.steps - 1 or state.log_now:
            loop.fire("on_log", state, step_record(loop, state))

    def on_log(self, loop, state: StepState, record: dict[str, Any]) -> None:
        loop.outcome.log.append(record)
        if self.callback is not None:
            self.callback(record)


def step_record(loop, state: StepState) -> dict[str, Any]:
    """Loss, learning rate, each term's loss and weight, the step's features and the strategy's
    scalars."""
    features, strategy = state.features, loop.strategy
    record: dict[str, Any] = {"step": state.step, "loss": state.loss, "lr": loop.scheduler.get_last_lr()[0]}
    record.update({f"term/{k}": v for k, v in state.term_losses.items()})
    for i, key in enumerate(loop.distiller.terms):
        w = state.weights[i]
        record[f"weight/{key}"] = float(w) if w.dim() == 0 else features.batch_mean(w.detach().float())
    record.update({f"feature/{k}": v for k, v in features.to_batch_dict().items()})
    record.update({f"strategy/{k}": float(v) for k, v in strategy.log_scalars().items()})
    return record

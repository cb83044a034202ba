"""Alignment criteria before and after each update, for strategies that observe them
(Feedback.probe_before/after on the probe batch, batch_before/after on the step's batches)."""
from __future__ import annotations

from arkd_bench.train.hooks.base import StepState, TrainingHook


def measure_criteria(loop, state: StepState, probe, probe_now=None):
    """The criteria the strategy asked for: on `probe` (when it asked for "probe") and/or this
    step's batches ("batch_after"), at the current weights (`probe_now`: the probe's, when
    already known)."""
    from arkd_bench.weighting.base import TrialResult

    d = loop.distiller
    if probe is not None and probe_now is None:
        probe_now = d._criteria([probe])
    batch_after = "batch_after" in loop.strategy.feedback_requests
    return TrialResult(probe=probe_now, batch=d._criteria(state.micro_batches) if batch_after else None)


class CriteriaFeedback(TrainingHook):
    """`probe`: the probe batch (teacher logits attached) when the strategy asked for "probe"."""

    def __init__(self, probe) -> None:
        self.probe = probe
        self.probe_after = None

    def on_backward_end(self, loop, state: StepState) -> None:
        # Nothing changes the weights between the last step's "after" and this step's
        # "before" (trials restore them exactly), and eval mode is deterministic: the probe
        # is not measured twice at the same weights.
        before = measure_criteria(loop, state, self.probe, self.probe_after)
        state.feedback.update(probe_before=before.probe, batch_before=before.batch)

    def on_optimizer_step(self, loop, state: StepState) -> None:
        after = measure_criteria(loop, state, self.probe)
        self.probe_after = after.probe
        state.feedback.update(probe_after=after.probe, batch_after=after.batch)

    def state_dict(self):
        return {"probe_after": self.probe_after}  # the next step's "before", not measured again

    def load_state_dict(self, state) -> None:
        self.probe_after = state["probe_after"]

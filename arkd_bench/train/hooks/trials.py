"""Each term's gradient kept apart for the step, and trial updates for strategies that ask
("trial"): the strategy's `before_update` tries mixes from the exact pre-update state, and the
update then uses the mix it chose (or the step's own weights)."""
from __future__ import annotations

from arkd_bench.train.hooks.base import StepState, TrainingHook
from arkd_bench.train.hooks.criteria import measure_criteria


def check_single_process(loop) -> None:
    if loop.accelerator.num_processes > 1:
        raise ValueError(f"weighting {loop.distiller.method.weighting.name!r} requests trial updates or probe "
                         "gradients, which keep each term's gradient apart and run in a single process only")


class TermGradientUpdates(TrainingHook):
    """Keeps each term's gradient apart; with `trials`, lets the strategy try updates first.
    `probe`: the probe batch whose criteria a trial measures (None: the strategy did not ask)."""

    def __init__(self, trials: bool, probe) -> None:
        self.trials, self.probe = trials, probe

    def on_train_begin(self, loop) -> None:
        check_single_process(loop)

    def on_step_begin(self, loop, state: StepState) -> None:
        from arkd_bench.train.trial import TermGradients, active_scaler

        # under fp16 the terms' gradients are of the scaled losses, as accelerate's backward's are
        state.term_grads = TermGradients(loop.student.parameters(), len(loop.distiller.terms),
                                         scaler=active_scaler(loop.optimizer))

    def on_pre_optimizer_step(self, loop, state: StepState) -> None:
        import torch

        from arkd_bench.train.trial import TrialUpdate

        term_grads, chosen = state.term_grads, None
        if self.trials:
            trial = TrialUpdate(term_grads, loop.optimizer, loop.clip)
            chosen = loop.strategy.before_update(
                lambda w: trial.run(w, lambda probe_now=None: measure_criteria(loop, state, self.probe, probe_now)))
            loop.distiller.trial_updates += trial.calls
        if chosen is not None:
            state.weights = torch.as_tensor(chosen, dtype=torch.float32)
            term_grads.install(term_grads.combined(state.weights.tolist()))
        else:
            term_grads.install(term_grads.actual)

"""The update's first-order effect on the probe criterion (Feedback.probe_grad), for strategies
that ask ("probe_grad"): measured at the pre-update weights, against the gradient the update is
about to use (so this hook comes after the one that installs it)."""
from __future__ import annotations

import time

from arkd_bench.train.hooks.base import StepState, TrainingHook


class ProbeGradientFeedback(TrainingHook):
    """`probe`: the probe batch, its teacher logits attached. Needs the terms' gradients kept
    apart (`TermGradientUpdates`, which also refuses several processes)."""

    def __init__(self, probe) -> None:
        self.probe = probe

    def on_pre_optimizer_step(self, loop, state: StepState) -> None:
        state.feedback["probe_grad"] = probe_gradient(loop.distiller, self.probe, state.term_grads, loop.optimizer)


def probe_gradient(distiller, probe, term_grads, optimizer):
    """The update's slopes of the probe criterion in each term's weight (Feedback.probe_grad),
    against the gradient now installed for the update; None when that gradient is not finite."""
    from arkd_bench.train.trial import first_order_slopes
    from arkd_bench.weighting.base import ProbeGradient

    d, clip = distiller, distiller.train.grad_clip
    started = time.perf_counter()
    value, probe_grad = d._probe_criterion_gradient(probe, term_grads.params, term_grads.scaler)
    step_grad = [p.grad for p in term_grads.params]
    slopes = first_order_slopes(term_grads, probe_grad, step_grad, optimizer, clip)
    held = first_order_slopes(term_grads, probe_grad, step_grad, optimizer, clip, hold_preconditioner=True)
    if slopes is None or held is None:
        return None
    return ProbeGradient(slopes=dict(zip(d.terms, slopes[0])), update=slopes[1], criterion=value,
                         held=dict(zip(d.terms, held[0])), seconds=time.perf_counter() - started)

"""Measurements that do not disturb training: eval mode for criteria, and trial updates.

A trial update answers "where would the criterion be if this step had used other weights?"
from the exact pre-update state: the step's gradient is linear in per-batch weights
(sum_t w_t * grad L_t), so with each term's gradient kept apart any mix's update costs one
optimizer step, and parameters, optimizer state and the loss scaler's state are restored bit
for bit afterwards.

Under fp16 mixed precision (a GradScaler on the prepared optimizer) the terms' gradients are
taken of the scaled losses, as `accelerator.backward` takes the loss's: kept, combined and
installed scaled, they are what the scaler's `unscale_`/`step` expect, so a trial's update and
the real one are unscaled once, and a step whose gradients overflow is skipped (and the scale
backed off) as a plain fp16 step is.
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def eval_mode(model):
    """Run a measurement without dropout, then give the model back its own mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def active_scaler(optimizer) -> Any | None:
    """The enabled GradScaler that `optimizer.step()` goes through (accelerate's prepared
    optimizer under fp16), or None."""
    scaler = getattr(optimizer, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


class TermGradients:
    """Each objective term's gradient summed over a step's micro-batches, and the step's
    actual (weighted) gradient, kept outside `param.grad`.

    With `scaler` (an enabled GradScaler) every gradient is of the scaled loss, as
    `param.grad` is after `accelerator.backward` under fp16."""

    def __init__(self, params: Sequence[Any], n_terms: int, scaler=None) -> None:
        import torch

        self.params = [p for p in params if p.requires_grad]
        self.per_term = [[torch.zeros_like(p) for p in self.params] for _ in range(n_terms)]
        self.actual = [torch.zeros_like(p) for p in self.params]
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None

    def backward(self, term_losses: Sequence[Any], weights: Sequence[float]) -> None:
        """Add d term_loss_t / d params to term t and w_t times it to the actual gradient."""
        import torch

        if self.scaler is not None:
            term_losses = [self.scaler.scale(loss) for loss in term_losses]
        last = len(term_losses) - 1
        for t, loss in enumerate(term_losses):
            grads = torch.autograd.grad(loss, self.params, retain_graph=t < last, allow_unused=True)
            w = float(weights[t])
            for acc, act, g in zip(self.per_term[t], self.actual, grads):
                if g is not None:
                    acc.add_(g)
                    if w != 0.0:  # an unused term's overflow (inf * 0) must not poison the step
                        act.add_(g, alpha=w)

    def combined(self, weights: Sequence[float]) -> list[Any]:
        """sum_t w_t * (term t's gradient); terms of weight 0 are left out, not multiplied by 0."""
        import torch

        out = [torch.zeros_like(p) for p in self.params]
        for w, term in zip(weights, self.per_term):
            if float(w) != 0.0:
                for o, g in zip(out, term):
                    o.add_(g, alpha=float(w))
        return out

    def install(self, grads: Sequence[Any]) -> None:
        """Make `grads` the parameters' .grad for the next optimizer step."""
        for p, g in zip(self.params, grads):
            p.grad = g.clone()


class TrialUpdate:
    """`run(weights, measure)`: the update with those per-batch weights, `measure()`, then
    the exact state from before (parameters, optimizer state, `.grad`, and the state of the
    optimizer's GradScaler, whose `update()` the trial's step calls)."""

    def __init__(self, grads: TermGradients, optimizer, clip: Callable[[], Any] | None) -> None:
        self.grads, self.optimizer, self.clip = grads, optimizer, clip
        self.calls = 0

    def run(self, weights: Sequence[float], measure: Callable[[], T]) -> T:
        import torch

        params = self.grads.params
        saved_params = [p.detach().clone() for p in params]
        saved_grads = [None if p.grad is None else p.grad.clone() for p in params]
        saved_state = copy.deepcopy(self.optimizer.state_dict())
        saved_scaler = _ScalerState.save(self.optimizer)
        try:
            self.grads.install(self.grads.combined(weights))
            if self.clip is not None:
                self.clip()
            self.optimizer.step()
            return measure()
        finally:
            with torch.no_grad():
                for p, saved, grad in zip(params, saved_params, saved_grads):
                    p.copy_(saved)
                    p.grad = grad
            self.optimizer.load_state_dict(saved_state)
            if saved_scaler is not None:
                saved_scaler.restore()
            self.calls += 1


class _ScalerState:
    """A GradScaler's scale, growth tracker and per-optimizer inf checks, plus the prepared
    optimizer's overflow flag: all that a step (`scaler.step`, `scaler.update`) changes."""

    def __init__(self, optimizer, scaler) -> None:
        self.optimizer, self.scaler = optimizer, scaler
        self.scale = None if scaler._scale is None else scaler._scale.clone()
        self.growth = None if scaler._growth_tracker is None else scaler._growth_tracker.clone()
        self.per_optimizer = copy.deepcopy(scaler._per_optimizer_states)
        self.overflow = getattr(optimizer, "_is_overflow", None)

    @classmethod
    def save(cls, optimizer) -> _ScalerState | None:
        scaler = active_scaler(optimizer)
        return None if scaler is None else cls(optimizer, scaler)

    def restore(self) -> None:
        scaler = self.scaler
        if self.scale is None:
            scaler._scale = scaler._growth_tracker = None  # lazily initialised again, as before
        else:
            scaler._scale.copy_(self.scale)
            scaler._growth_tracker.copy_(self.growth)
        scaler._per_optimizer_states = copy.deepcopy(self.per_optimizer)
        if self.overflow is not None:
            self.optimizer._is_overflow = self.overflow

"""Measurements that do not disturb training: eval mode for criteria, and trial updates.

A trial update answers "where would the criterion be if this step had used other weights?"
from the exact pre-update state: the step's gradient is linear in per-batch weights
(sum_t w_t * grad L_t), so with each term's gradient kept apart any mix's update costs one
optimizer step, and parameters and optimizer state are restored bit for bit afterwards.
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


class TermGradients:
    """Each objective term's gradient summed over a step's micro-batches, and the step's
    actual (weighted) gradient, kept outside `param.grad`."""

    def __init__(self, params: Sequence[Any], n_terms: int) -> None:
        import torch

        self.params = [p for p in params if p.requires_grad]
        self.per_term = [[torch.zeros_like(p) for p in self.params] for _ in range(n_terms)]
        self.actual = [torch.zeros_like(p) for p in self.params]

    def backward(self, term_losses: Sequence[Any], weights: Sequence[float]) -> None:
        """Add d term_loss_t / d params to term t and w_t times it to the actual gradient."""
        import torch

        last = len(term_losses) - 1
        for t, loss in enumerate(term_losses):
            grads = torch.autograd.grad(loss, self.params, retain_graph=t < last, allow_unused=True)
            for acc, act, g in zip(self.per_term[t], self.actual, grads):
                if g is not None:
                    acc.add_(g)
                    act.add_(g, alpha=float(weights[t]))

    def combined(self, weights: Sequence[float]) -> list[Any]:
        out = [g.mul(float(weights[0])) for g in self.per_term[0]]
        for w, term in zip(weights[1:], self.per_term[1:]):
            for o, g in zip(out, term):
                o.add_(g, alpha=float(w))
        return out

    def install(self, grads: Sequence[Any]) -> None:
        """Make `grads` the parameters' .grad for the next optimizer step."""
        for p, g in zip(self.params, grads):
            p.grad = g.clone()


class TrialUpdate:
    """`run(weights, measure)`: the update with those per-batch weights, `measure()`, then
    the exact state from before (parameters, optimizer state, `.grad`)."""

    def __init__(self, grads: TermGradients, optimizer, clip: Callable[[], Any] | None) -> None:
        self.grads, self.optimizer, self.clip = grads, optimizer, clip
        self.calls = 0

    def run(self, weights: Sequence[float], measure: Callable[[], T]) -> T:
        import torch

        params = self.grads.params
        saved_params = [p.detach().clone() for p in params]
        saved_grads = [None if p.grad is None else p.grad.clone() for p in params]
        saved_state = copy.deepcopy(self.optimizer.state_dict())
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
            self.calls += 1

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

`first_order_slopes` answers the same question without a trial, to first order: from the terms'
gradients, the probe criterion's gradient and the optimizer's state, how the criterion after the
update moves with each term's weight (unscaling fp16 gradients once, consistently).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from arkd_bench.train.optim import torch_optimizer

T = TypeVar("T")


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


# -- first-order effect of the update on a criterion -------------------------------------------


def first_order_slopes(grads: TermGradients, probe_grad: Sequence[Any], step_grad: Sequence[Any], optimizer,
                       max_norm: float | None, *, hold_preconditioner: bool = False
                       ) -> tuple[list[float], float] | None:
    """How this step's update moves a criterion c, to first order, per unit of each term's weight.

    `probe_grad` is dc/dparams at the pre-update weights (unscaled, aligned with `grads.params`);
    `step_grad` the gradient G = sum_t w_t g_t the update will use (as installed: scaled under
    fp16, like `grads.per_term`). With clipping factor k = min(1, max_norm / |G|) and g = k G,
    AdamW moves each parameter by

        delta = -lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * theta),
        m = beta1 m_prev + (1 - beta1) g,  v = beta2 v_prev + (1 - beta2) g^2,
        m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t),  D = sqrt(v_hat) + eps.

    Momentum: the earlier steps' part of m (beta1 m_prev) and the decay do not depend on this
    step's weights, so they move every weighting's update alike and cancel in a paired reward; the
    current gradient enters m with (1 - beta1) / (1 - beta1^t). Its derivative per coordinate is

        d delta / d g = -lr / ((1 - beta1^t) D) * [(1 - beta1) - (m / D)(g / sqrt(v_hat))
                                                     * (1 - beta2) / (1 - beta2^t)],

    whose second part is v's own dependence on g (AdamW's first step is sign(g): its derivative
    is 0), and clipping, when active, removes the component along G (scaling every weight
    together does not change a clipped update): dg/dw_t = k (g_t - G (G . g_t) / |G|^2). So

        slope_t = dc_after / dw_t = probe_grad . (d delta / d g) dg/dw_t,

    and `update` = the same for w = the step's own weights (sum_t w_t slope_t by linearity; 0 under
    active clipping): exact for small changes of the weights (the loop's ProbeGradient.slopes).
    Where v holds little history (the first step, rarely seen embedding rows) AdamW's update is
    close to sign(g), flat in the weights until a coordinate's sign flips. With
    `hold_preconditioner` P = 1 / D and k are held at the step's values instead, the plain
    -lr (1 - beta1)/(1 - beta1^t) k probe_grad . P g_t (ProbeGradient.held): no longer the
    derivative of the real update; on the alpha-sweep run (benchmarks/first_order_reward.py) it
    correlated less with the paired rewards of trial updates and overstated them more. Returns
    (slopes, update), or None when the step's gradient is not finite (an fp16 step the scaler
    will skip)."""
    import torch

    inner = torch_optimizer(optimizer)
    if not isinstance(inner, (torch.optim.Adam, torch.optim.AdamW)):
        raise ValueError(f"first-order slopes know the update of Adam/AdamW only, not {type(inner).__name__}")
    inv_scale = 1.0 / grads.scaler.get_scale() if grads.scaler is not None else 1.0
    steps = [_wide(g) * inv_scale for g in step_grad]
    norm_sq = sum(float(g.pow(2).sum()) for g in steps)
    if not math.isfinite(norm_sq):
        return None
    k = 1.0 if max_norm is None else min(1.0, max_norm / (norm_sq**0.5 + 1e-6))  # as clip_grad_norm_
    project = k < 1.0 and not hold_preconditioner
    group_of = {id(p): group for group in inner.param_groups for p in group["params"]}
    n_terms = len(grads.per_term)
    pulled, along = [0.0] * n_terms, [0.0] * n_terms  # probe_grad . J g_t and G . g_t
    pulled_step = 0.0  # probe_grad . J G
    for i, (p, g_probe, g_step) in enumerate(zip(grads.params, probe_grad, steps)):
        jacobian = _adam_jacobian(inner, group_of[id(p)], p, k * g_step, hold_preconditioner)
        u = _wide(g_probe) * jacobian
        for term, per_term in enumerate(grads.per_term):
            g_term = _wide(per_term[i])
            pulled[term] += float((u * g_term).sum()) * inv_scale
            if project:
                along[term] += float((g_step * g_term).sum()) * inv_scale
        pulled_step += float((u * g_step).sum())
    if project:
        slopes = [k * (a - b / norm_sq * pulled_step) for a, b in zip(pulled, along)]
        update = 0.0
    else:
        slopes, update = [k * a for a in pulled], k * pulled_step
    if not all(map(math.isfinite, [*slopes, update])):
        return None
    return slopes, update


def _adam_jacobian(optimizer, group, p, g, hold_preconditioner: bool):
    """d delta / d g for one parameter (diagonal, elementwise) of Adam/AdamW's next step."""
    import torch

    if group.get("maximize"):
        raise ValueError("first-order slopes assume a minimising optimizer")
    beta1, beta2 = group["betas"]
    state = optimizer.state.get(p, {})
    decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get("decoupled_weight_decay", False)
    if group["weight_decay"] and not decoupled:  # Adam's L2 decay joins the gradient
        g = g + group["weight_decay"] * _wide(p)
    t = float(state.get("step", 0.0)) + 1.0
    m, v = (1.0 - beta1) * g, (1.0 - beta2) * g * g
    if "exp_avg" in state:
        m = m + beta1 * _wide(state["exp_avg"])
        v = v + beta2 * _wide(state["exp_avg_sq"])
    through_v = not hold_preconditioner
    if group.get("amsgrad") and state.get("max_exp_avg_sq") is not None:
        kept = _wide(state["max_exp_avg_sq"])
        through_v = through_v & (v >= kept)  # where the running max wins, v does not move with g
        v = torch.maximum(v, kept)
    root = (v / (1.0 - beta2**t)).sqrt()
    denom = root + group["eps"]
    inner = torch.full_like(g, 1.0 - beta1)
    if through_v is not False:
        ratio = torch.where(root > 0, g / root.clamp_min(1e-30), 0.0)  # bounded: v >= (1 - beta2) g^2
        inner = inner - torch.where(torch.as_tensor(through_v), (m / denom) * ratio * (1.0 - beta2) / (1.0 - beta2**t), 0.0)
    return -float(group["lr"]) / (1.0 - beta1**t) * inner / denom


def _wide(x):
    """x detached, in float32 or wider (half-precision gradients and states are widened)."""
    import torch

    return x.detach().to(torch.promote_types(x.dtype, torch.float32))

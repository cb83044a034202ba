"""Hypergradient descent on the FKL weight: alpha follows the gradient of the probe criterion.

After each optimizer step the loop reports, to first order, how the probe criterion c after the
update would have changed per unit of each term's weight (Feedback.probe_grad, one probe forward
and backward in eval mode; see arkd_bench.train.trial.first_order_slopes). With FKL weight alpha
and RKL weight 1 - alpha, the derivative of c after the update in alpha is

    h = dc_after / d alpha = slope_fkl - slope_rkl ~ -lr_eff * grad c . P (grad L_fkl - grad L_rkl),

P = 1/(sqrt(v_hat) + eps) AdamW's diagonal preconditioner and lr_eff = lr (1 - beta1)/(1 - beta1^t)
times the clipping factor; the loop's slopes also differentiate P and the clipping themselves
(ProbeGradient.slopes). Alpha takes an online gradient step on it (what a step with a little more
FKL would have done to the probe), averaged over steps:

    m = ema * m + (1 - ema) * h                      (bias-corrected: m_hat)
    s = rms_decay * s + (1 - rms_decay) * h^2        (bias-corrected: s_hat; normalize: rms)
    alpha <- clip(alpha - beta * m_hat / sqrt(s_hat), 0, 1)   (normalize: none: beta * m_hat)

h scales with the learning rate, its schedule and the criterion, so with `normalize: rms` (the
default) the step is divided by h's running rms and beta is in units of alpha: a hypergradient
that keeps its sign moves alpha by about beta a step, one that flips at random by about
beta * sqrt((1 - ema) / (1 + ema)) in a random direction.

The one-step probe criterion is nearly linear in alpha, so its per-step minimiser sits at 0 or 1
and flips between them (what `lookahead` does); the average of its slope instead vanishes where
training with that alpha leaves the probe criterion flat in alpha, which can be interior.

One alpha for the whole batch (scope: global). A per-sequence alpha would need each sequence's own
hypergradient, i.e. each sequence's per-term gradients (per-example gradients: a backward per
sequence and term) or a directional derivative of every token's terms along P grad c (forward-mode
through the model); and something to keep for the sequence between steps, which a training
sequence seen a few times a run does not give (a feature-conditioned alpha would be a policy, as in
`arkd`). Neither is done here.
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, PositiveFloat

from arkd_bench.plugins.options import PluginOptions
from arkd_bench.weighting.base import Feedback, PassSettings
from arkd_bench.weighting.fkl_rkl import CRITERIA, FklRklStrategy


class HypergradOptions(PluginOptions):
    beta: PositiveFloat = Field(
        0.01, description="meta learning rate; with normalize: rms about the most alpha moves in one step"
    )
    init: float = Field(0.5, ge=0.0, le=1.0, description="alpha (FKL weight) at the first step")
    scope: Literal["global"] = Field(
        "global", description="one alpha per step for the whole batch (per-sequence: not implemented, see the guide)"
    )
    ema: float = Field(0.9, ge=0.0, lt=1.0, description="decay of the hypergradient's moving average (0: this step's)")
    normalize: Literal["rms", "none"] = Field(
        "rms", description="rms: divide the averaged hypergradient by its running rms, so beta is scale-free"
    )
    rms_decay: float = Field(0.99, ge=0.0, lt=1.0, description="decay of the hypergradient's running mean square")
    criterion: Literal["fkl+rkl", "tvd", "fkl", "rkl"] = Field(
        "fkl+rkl", description="probe criterion whose post-update value alpha descends"
    )


class HypergradWeighting(FklRklStrategy):
    """FKL weight alpha (RKL 1 - alpha) set by online gradient descent on the post-update probe
    criterion, with the first-order hypergradient the loop measures."""

    name = "hypergrad"
    Options = HypergradOptions
    feedback_requests = frozenset({"probe_grad"})

    def __init__(self, terms=("fkl", "rkl"), **options: Any) -> None:
        super().__init__(terms, **options)
        self.probe_grad_criteria = CRITERIA[self.options.criterion]
        self._alpha = float(self.options.init)
        self._m = 0.0  # biased ema of h
        self._s = 0.0  # biased ema of h^2
        self._n = 0  # hypergradients seen
        self._last: dict[str, float] = {}

    @property
    def alpha(self) -> float:
        return self._alpha

    @property
    def pass_settings(self) -> PassSettings:
        return PassSettings(features=False)  # learns from probe gradients, reads no feature

    def weights(self, features):
        self._last = {"alpha": self._alpha}
        return self.in_term_order(self._alpha, 1.0 - self._alpha).to(features.mask.device)

    def observe(self, feedback: Feedback) -> None:
        grad = feedback.probe_grad
        if grad is None:  # a skipped (non-finite) step has no hypergradient; alpha stays
            return
        o = self.options
        h = grad.slopes[self.terms[self._fkl_at]] - grad.slopes[self.terms[self._rkl_at]]
        self._n += 1
        self._m = o.ema * self._m + (1.0 - o.ema) * h
        self._s = o.rms_decay * self._s + (1.0 - o.rms_decay) * h * h
        m_hat = self._m / (1.0 - o.ema**self._n)
        if o.normalize == "rms":
            rms = math.sqrt(self._s / (1.0 - o.rms_decay**self._n))
            step = m_hat / rms if rms > 0.0 else 0.0
        else:
            step = m_hat
        self._alpha = min(1.0, max(0.0, self._alpha - o.beta * step))
        self._last.update({"hypergrad": h, "hypergrad_avg": m_hat, "meta_step": -o.beta * step})

    def log_scalars(self) -> dict[str, float]:
        """alpha (the FKL weight of the step just taken), hypergrad (its dc_after/d alpha),
        hypergrad_avg (the bias-corrected moving average), meta_step (the change of alpha it made)."""
        return dict(self._last)

    def state_dict(self) -> dict[str, Any]:
        return {"version": 1, "alpha": self._alpha, "m": self._m, "s": self._s, "n": self._n,
                "last": dict(self._last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._alpha = float(state["alpha"])
        self._m, self._s, self._n = float(state["m"]), float(state["s"]), int(state["n"])
        self._last = dict(state.get("last", {}))

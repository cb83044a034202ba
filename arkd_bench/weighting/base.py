"""The WeightingStrategy interface: how an objective's terms are mixed at each step.

A strategy sees the StepFeatures of the divergence pass and returns one weight per
objective term, per batch (shape [T]) or per token (shape [T, *token_shape]). After
the optimizer step the loop hands it a Feedback, from which an RL strategy builds a
reward. Strategies are importable without pluggy.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

from arkd_bench.plugins.options import NoOptions

if TYPE_CHECKING:
    import torch

    from arkd_bench.divergences import StepFeatures


# What a strategy may ask the loop to measure for its feedback (see Feedback), and
# "trial": hypothetical updates from the pre-update state (see WeightingStrategy.before_update).
# "probe_grad": the first-order effect of the update on the probe criterion (Feedback.probe_grad).
FEEDBACK_REQUESTS = frozenset({"probe", "batch_after", "rouge_probe", "trial", "probe_grad"})
# What a divergence term may declare itself to be (Divergence.direction): forward-like terms
# cover the teacher's modes (FKL, skew FKL), reverse-like ones seek them (RKL, skew RKL).
DIRECTIONS = ("forward", "reverse")


@dataclass
class ProbeGradient:
    """What this step's update does to the probe criterion c, to first order ("probe_grad").

    c is the sum of the strategy's `probe_grad_criteria` (batch means over the probe's response
    tokens), and its gradient is taken at the pre-update weights with the student in eval mode.
    `slopes[label]` = dc_after / dw_label: the derivative of c after the real AdamW update in
    that term's weight (bias corrections, the second moment's and the clipping's own dependence
    on the gradient included; see `arkd_bench.train.trial.first_order_slopes`). `update` is the
    same along the gradient the update used (sum_t w_t slopes[t] when the step had one weight
    per term), so `sum_t w'_t slopes[t] - update` predicts c after an update with weights w'
    minus c after the real one, from the same state and batch: a paired reward without a trial
    update. `held` is the simpler -lr (1 - beta1)/(1 - beta1^t) k grad c . P grad L_label with
    AdamW's preconditioner P = 1/(sqrt(v_hat) + eps) and the clipping factor k held at the
    step's values, which agreed less with trial rewards (benchmarks/first_order_reward.py).
    `criterion` is c before the update, `seconds` what it all cost.
    """

    slopes: dict[str, float]
    update: float
    criterion: float
    held: dict[str, float] | None = None
    seconds: float = 0.0


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
    `probe_grad` is the update's first-order effect on the probe criterion ("probe_grad"; see
    ProbeGradient), None when not requested or when the step's gradient was not finite.
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
    probe_grad: ProbeGradient | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialResult:
    """Criteria after a hypothetical update (batch means of fkl, rkl, tvd): on the probe
    batch when the strategy requests "probe", on the step's training batch when it requests
    "batch_after"; None otherwise."""

    probe: dict[str, float] | None = None
    batch: dict[str, float] | None = None


@dataclass(frozen=True)
class PassSettings:
    """What the divergence pass computes for a strategy (WeightingStrategy.pass_settings).

    `mu` is the teacher head mass behind StepFeatures' AKL gaps g_head / g_tail and `head` how
    it is read: "paper", the head is the smallest teacher-sorted prefix reaching mass mu;
    "official", the tail is the least likely tokens with mass <= mu. `mu` None (the default,
    for strategies that do not read the gaps) keeps the recipe's `train.mu`, read as "paper".

    `features` False: `weights` and `observe` read none of StepFeatures' computed fields (only
    the mask, terms, ce and progress), so the pass skips them (they are then None and absent
    from the training log); they cost about as much as the rest of the pass. Default True, so
    a strategy that does not say gets them all.
    """

    mu: float | None = None
    head: Literal["paper", "official"] = "paper"
    features: bool = True


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
    # The probe criteria whose sum's gradient the loop takes for "probe_grad".
    probe_grad_criteria: tuple[str, ...] = ("fkl", "rkl")

    def __init__(self, terms: Sequence[str] = ("fkl", "rkl"), *,
                 directions: Sequence[str | None] | None = None, **options: Any) -> None:
        self.terms = list(terms)
        if directions is not None and len(directions) != len(self.terms):
            raise ValueError(f"{len(directions)} directions for {len(self.terms)} terms {self.terms}")
        self.directions = None if directions is None else list(directions)
        self.options = self.Options.model_validate(options)
        self.check_terms(self.terms)

    @property
    def pass_settings(self) -> PassSettings:
        """What the divergence pass must compute for this strategy's features; read by the loop
        at every pass. Default: the recipe's mu. Strategies built on AKL's gaps return their own."""
        return PassSettings()

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


# -- what the loop checks of `weights()` ------------------------------------------------------
# Weights are finite and >= 0: a negative weight turns its divergence into something the update
# maximises, NaN or inf poisons the loss. All-zero weights are allowed (a strategy may skip a
# batch: its loss and gradient are then 0).


def weights_shape_problem(weights: Any, n_terms: int, token_shape: Sequence[int]) -> str | None:
    """What is wrong with the type or shape of `weights` ([T] or [T, *token_shape]), or None.
    Reads no tensor values (no device synchronisation)."""
    import torch

    if not isinstance(weights, torch.Tensor):
        return (f"expected a torch.Tensor of shape [{n_terms}] or [{n_terms}, {', '.join(map(str, token_shape))}], "
                f"got {type(weights).__name__}")
    if weights.is_complex() or weights.dtype == torch.bool:
        return f"expected real weights, got a tensor of dtype {weights.dtype}"
    shape, token_shape = tuple(weights.shape), tuple(token_shape)
    if shape not in ((n_terms,), (n_terms, *token_shape)):
        per_token = (n_terms, *token_shape)
        return (f"expected shape ({n_terms},) (one weight per term) or {per_token} (per term and token), "
                f"got {shape}, for {n_terms} objective terms")
    return None


def weights_ok(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A 0-dim bool tensor on the weights' device (not read here: no synchronisation): every
    weight finite (masked positions included: 0 * NaN is NaN in the loss), and >= 0 wherever
    it multiplies a scored token."""
    import torch

    finite = torch.isfinite(weights).all()
    if weights.dim() > 1:
        weights = torch.where(mask.to(weights.device), weights, 0)
    return finite & (weights >= 0).all()


def weights_problem(weights: torch.Tensor, terms: Sequence[str], mask: torch.Tensor) -> str:
    """Say what is wrong with weights that failed `weights_ok` (reads them: failure path only)."""
    import torch

    w = weights.detach().float().cpu()
    listed = f" (weights {[round(v, 6) for v in w.tolist()]} for terms {list(terms)})" if w.dim() == 1 else ""
    scored = mask.cpu().expand_as(w[0]) if w.dim() > 1 else None
    for i, term in enumerate(terms):
        row = w[i]
        bad = ~torch.isfinite(row)
        if bad.any():
            where_ = f"{_position(bad)} ({int(bad.sum())} non-finite of {row.numel()})" if row.dim() else ""
            return (f"weight of term {term!r} is {row[bad].flatten()[0].item()}{where_}{listed}; "
                    "weights must be finite and >= 0")
    for i, term in enumerate(terms):
        row = w[i] if scored is None else torch.where(scored, w[i], 0)
        bad = row < 0
        if bad.any():
            value = row[bad].min().item()
            where_ = _position(bad) if row.dim() else ""
            return (f"weight of term {term!r} is negative: {value:g}{where_}{listed}; weights must be finite "
                    "and >= 0 (a negative weight makes the update maximise its divergence)")
    return f"the weights are not finite and >= 0{listed}"


def _position(bad: torch.Tensor) -> str:
    first = tuple(int(i) for i in bad.nonzero()[0])
    return f" at token {first}"


def check_weights(strategy: WeightingStrategy, weights: Any, features: StepFeatures,
                  name: str | None = None) -> torch.Tensor:
    """`weights` when they keep the contract of `WeightingStrategy.weights` for `features`, else
    a PluginOutputError naming the strategy (`name`: its registered name), its file, the method
    and the step. One device synchronisation; the training loop folds it into its own check."""
    from arkd_bench.plugins.output import PluginOutputError, name_of

    name = name or name_of(strategy)
    problem = weights_shape_problem(weights, len(strategy.terms), features.mask.shape)
    if problem is None and not bool(weights_ok(weights, features.mask)):
        problem = weights_problem(weights, strategy.terms, features.mask)
    if problem is not None:
        raise PluginOutputError("weighting", name, type(strategy), "weights", problem, step=features.step)
    return weights

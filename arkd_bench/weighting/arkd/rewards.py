"""ARKD's reward for each optimizer step, and its advantage against a running baseline.

Rewards (raw r, larger is better; every criterion measured in eval mode):
  probe: criterion(probe before update) - criterion(probe after)   [requests "probe"]
  batch: criterion(training batch before) - criterion(batch after) [requests "batch_after"]
  rouge: Rouge-L on a validation probe every reward_every steps minus its previous value;
         the one reward goes to every action of those steps.     [requests "rouge_probe"]
With paired_alpha = a (probe or batch): r = criterion(after the update with alpha = a) -
criterion(after the update actually made), both from the same state on the same batch (one
trial update a step, [requests "trial"]). What the step, the batch and the learning rate do
to the criterion is common to both and cancels; only the effect of the chosen alpha is left.
  first_order: the same paired probe reward to first order in the update, without a trial:
         r = sum_t w_t(a) slope_t - update (Feedback.probe_grad: slope_t = dc_after/dw_t, the
         derivative of the probe criterion after the real AdamW update in term t's weight, see
         train/trial.py's first_order_slopes), a = paired_alpha or 0.5; for one alpha per step
         r = (alpha - a) * (slope_rkl - slope_fkl), linear in alpha. One probe forward and
         backward a step, no probe criteria, no trial.            [requests "probe_grad"]
reward_scale: relative divides r by the criterion before the update (a per-step scale).
reward_horizon: K > 1 sums the rewards of K consecutive steps (for probe and batch the
criterion's decrease over the whole window: the per-step decreases telescope) and gives the
sum to every action of the window, each by its own log-prob, with one advantage per window
(update_every then counts windows).
Advantage: z = (r - b) / s, b a moving average of r (decay baseline_decay), s a running
rms of r - b (with reward_norm), so entropy_coef acts against a unit advantage scale; the
first two rewards only initialise b and s. baseline: value additionally subtracts a learned
V(state) trained to predict z (policy.reinforce_loss).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from arkd_bench.weighting.arkd.saved import restore_fields, saved_fields

if TYPE_CHECKING:
    from arkd_bench.weighting.arkd.options import ArkdOptions
    from arkd_bench.weighting.base import Feedback, TrialResult

# The Feedback request behind each reward.
REQUESTS = {"probe": "probe", "batch": "batch_after", "rouge": "rouge_probe", "first_order": "probe_grad"}
_ADV_CLIP = 5.0  # normalised advantages beyond this are outliers, not information
_SCALE_DECAY = 0.99  # slow: the advantage scale should not chase single rewards


class StepReward:
    """The raw reward r of the steps, from their Feedback; what it carries between steps is
    saved under the names of INITIAL."""

    INITIAL = {
        "rouge_ref": None,  # the previous Rouge-L measurement
        "paired_after": None,  # criterion after the paired_alpha trial, this step
        "window_sum": 0.0,  # rewards of the current reward_horizon window so far
        "window_n": 0,  # steps rewarded in it
    }

    def __init__(self, options: ArkdOptions, criteria: tuple[str, ...], pair: tuple[str, str],
                 requests: frozenset[str]) -> None:
        self.options, self.criteria, self.requests = options, criteria, requests
        self.fkl_label, self.rkl_label = pair
        for name, value in self.INITIAL.items():
            setattr(self, name, value)

    def before_update(self, trial: Callable[[Sequence[float]], TrialResult], weights: list[float] | None,
                      in_warmup: bool) -> None:
        """paired_alpha (`weights`, in term order): measure where the reference alpha's update
        would have taken the criterion."""
        o = self.options
        self.paired_after = None
        if weights is None or o.reward == "first_order" or in_warmup:
            return
        result = trial(weights)
        self.paired_after = self._criterion(result.probe if o.reward == "probe" else result.batch, "after")

    def measure(self, fb: Feedback, in_warmup: bool) -> float | None:
        """The probe, batch or first_order reward of the step; None when it was not measured."""
        o = self.options
        if o.reward == "first_order":
            return self._first_order(fb)
        if o.reward == "probe":
            before, after = fb.probe_before, fb.probe_after
            where = "probe_before/probe_after"
        else:
            before, after = fb.batch_before, fb.batch_after
            where = "batch_before/batch_after"
        if before is None or after is None:
            if in_warmup:  # the loop may skip costly probes while alpha is fixed
                return None
            raise ValueError(
                f"arkd weighting with reward: {o.reward} needs Feedback.{where}; the loop must honour "
                f"feedback_requests={set(self.requests)}"
            )
        before, after = self._criterion(before, "before"), self._criterion(after, "after")
        if o.paired_alpha is not None:
            if self.paired_after is None:
                if in_warmup:
                    return None
                raise ValueError("arkd weighting with paired_alpha needs the loop to call before_update "
                                 "(it requests 'trial')")
            reward = self.paired_after - after
            self.paired_after = None
        else:
            reward = before - after
        if o.reward_scale == "relative":
            reward /= max(abs(before), 1e-12)
        return reward

    def windowed(self, reward: float) -> float | None:
        """The sum of the rewards of reward_horizon consecutive steps, at the window's last step
        (None before it)."""
        self.window_sum += reward
        self.window_n += 1
        if self.window_n < self.options.reward_horizon:
            return None
        total, self.window_sum, self.window_n = self.window_sum, 0.0, 0
        return total

    def rouge(self, fb: Feedback, step: int) -> tuple[float, float | None] | None:
        """(Rouge-L, its change since the previous measurement) at the steps that measure it,
        None at the others; the change is None at the first measurement (no reference yet)."""
        o = self.options
        k = step - o.warmup_steps  # index among policy steps; -1: last warmup step
        if k < -1 or (k >= 0 and (k + 1) % o.reward_every):
            return None
        if fb.rouge_probe is None:
            raise ValueError(
                "arkd weighting with reward: rouge needs Feedback.rouge_probe (it requests 'rouge_probe')"
            )
        value = float(fb.rouge_probe())
        ref, self.rouge_ref = self.rouge_ref, value
        return value, None if ref is None else value - ref

    def _first_order(self, fb: Feedback) -> float | None:
        """sum_t w_t(a) slope_t - update: the probe criterion after the reference alpha's update
        minus after the real one, to first order (see ProbeGradient)."""
        o = self.options
        grad = fb.probe_grad
        if grad is None:  # warm-up, or the step's gradient was not finite (a skipped fp16 step)
            return None
        a = 0.5 if o.paired_alpha is None else o.paired_alpha
        f, r = grad.slopes[self.fkl_label], grad.slopes[self.rkl_label]
        reward = a * f + (1.0 - a) * r - grad.update
        if o.reward_scale == "relative":
            reward /= max(abs(grad.criterion), 1e-12)
        return reward

    def _criterion(self, values: dict[str, float], which: str) -> float:
        missing = [n for n in self.criteria if n not in values]
        if missing:
            raise ValueError(f"arkd reward needs criteria {missing} {which} the update; got {sorted(values)}")
        return sum(float(values[n]) for n in self.criteria)

    def state_dict(self) -> dict:
        return saved_fields(self, self.INITIAL)

    def load_state_dict(self, state: dict) -> None:
        restore_fields(self, self.INITIAL, state)


class Advantage:
    """z = (r - b) / s of each raw reward r, from the statistics of the rewards before it; what
    it carries is saved under the names of INITIAL."""

    INITIAL = {
        "reward_avg": None,  # the ema baseline b
        "adv_sq": 0.0,  # biased ema of (r - b)^2
        "adv_n": 0,
    }

    def __init__(self, decay: float, normalise: bool) -> None:
        self.decay, self.normalise = decay, normalise
        for name, value in self.INITIAL.items():
            setattr(self, name, value)

    def __call__(self, r: float) -> float:
        """z = (r - b) / s from the statistics before r, then fold r into them."""
        b = self.reward_avg
        if b is None:
            self.reward_avg = r
            return 0.0
        adv = r - b
        self.reward_avg = self.decay * b + (1.0 - self.decay) * r
        if not self.normalise:
            return adv
        scale = math.sqrt(self.adv_sq / (1.0 - _SCALE_DECAY**self.adv_n)) if self.adv_n else 0.0
        self.adv_sq = _SCALE_DECAY * self.adv_sq + (1.0 - _SCALE_DECAY) * adv * adv
        self.adv_n += 1
        if scale <= 0.0:
            return 0.0
        return max(-_ADV_CLIP, min(_ADV_CLIP, adv / scale))

    def state_dict(self) -> dict:
        return saved_fields(self, self.INITIAL)

    def load_state_dict(self, state: dict) -> None:
        restore_fields(self, self.INITIAL, state)

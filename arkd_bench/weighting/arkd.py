"""ARKD (arXiv 2606.29869): a policy network sets the FKL weight alpha by RL.

The policy reads normalised features of the step (see _features.STATE_FEATURES), samples
alpha in (0, 1) (RKL gets 1 - alpha) and learns by REINFORCE from an immediate reward,
with a baseline, an entropy bonus and its own Adam optimizer.

One optimizer step s, as the loop drives it:
  weights(features_s)  samples alpha_s at state_s; (state_s, action_s) is buffered
  backward / step      the student updates with alpha_s
  observe(feedback_s)  the reward measured for step s is attached to exactly the actions
                       sampled since the previous observe (all micro-batches of step s),
                       so a log-prob is never paired with a neighbouring step's reward.
Log-probs are recomputed from the buffered (state, action) at update time: the policy
has not changed since it acted, so they are the sampling log-probs, and the buffer can
be saved with the run.

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
V(state) trained to predict z.
"""
from __future__ import annotations

import copy
import difflib
import math
from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from arkd_bench.plugins.options import PluginOptions
from arkd_bench.weighting._features import (
    DEFAULT_STATE_FEATURES,
    STATE_FEATURES,
    batch_state,
    token_state,
)
from arkd_bench.weighting.base import Feedback
from arkd_bench.weighting.greedy import FklRklStrategy

CRITERIA = {"fkl+rkl": ("fkl", "rkl"), "tvd": ("tvd",), "fkl": ("fkl",), "rkl": ("rkl",)}
REQUESTS = {"probe": "probe", "batch": "batch_after", "rouge": "rouge_probe", "first_order": "probe_grad"}
# log_scalars keys that belong to the step that measured them, not carried to later steps
_PER_STEP_SCALARS = ("reward", "baseline", "rouge", "loss", "value_loss")
_ADV_CLIP = 5.0  # normalised advantages beyond this are outliers, not information
_SCALE_DECAY = 0.99  # slow: the advantage scale should not chase single rewards
# Options that only mean something with another option's value: setting them otherwise is an error.
_ONLY_WITH = {
    "reward_every": ("reward", {"rouge"}),
    "criterion": ("reward", {"probe", "batch", "first_order"}),
    "paired_alpha": ("reward", {"probe", "batch", "first_order"}),
    "reward_scale": ("reward", {"probe", "batch", "first_order"}),
    "reward_horizon": ("reward", {"probe", "batch", "first_order"}),
    "value_coef": ("baseline", {"value"}),
}


class ArkdOptions(PluginOptions):
    features: list[str] = Field(
        default_factory=lambda: list(DEFAULT_STATE_FEATURES), description="policy state, see STATE_FEATURES"
    )
    action: Literal["beta", "logit_normal", "bernoulli"] = Field(
        "beta", description="alpha's distribution; bernoulli: alpha in {0, 1} as in the authors' code"
    )
    granularity: Literal["batch", "token"] = Field("batch", description="one alpha per batch or per token")
    reward: Literal["probe", "batch", "rouge", "first_order"] = Field(
        "probe", description="probe/batch: the criterion's decrease over the step; rouge: Rouge-L change; "
                             "first_order: the paired probe reward to first order (no trial update)"
    )
    criterion: Literal["fkl+rkl", "tvd", "fkl", "rkl"] = Field(
        "fkl+rkl", description="alignment criterion whose decrease is the reward (probe, batch, first_order)"
    )
    reward_every: PositiveInt = Field(10, description="reward rouge: steps between Rouge-L probes")
    paired_alpha: float | None = Field(
        None, ge=0.0, le=1.0,
        description="reward probe/batch: subtract the decrease a step with this fixed alpha would give "
                    "from the same state and batch (one extra trial update a step); first_order: the "
                    "reference alpha of its paired reward (unset: 0.5)",
    )
    reward_scale: Literal["absolute", "relative"] = Field(
        "absolute", description="relative: divide the reward by the criterion before the update"
    )
    reward_horizon: PositiveInt = Field(
        1, description="probe/batch/first_order: steps whose summed reward (for probe and batch the "
                       "criterion's decrease over the window) goes to every action of the window"
    )
    baseline: Literal["ema", "value"] = "ema"
    baseline_decay: float = Field(0.9, ge=0.0, lt=1.0, description="decay of the reward moving average")
    value_coef: float = Field(0.5, ge=0.0, description="weight of the value head's squared error")
    reward_norm: bool = Field(True, description="divide advantages by a running rms")
    entropy_coef: float = Field(0.01, ge=0.0)
    lr: PositiveFloat = 1e-3
    update_every: PositiveInt = Field(
        4, description="policy update after this many rewarded steps (reward rouge: measurements)"
    )
    warmup_steps: NonNegativeInt = Field(0, description="steps at initial_alpha, without updates")
    initial_alpha: float = Field(
        0.5, ge=0.0, le=1.0, description="warmup alpha; the policy starts centred on it"
    )
    hidden: list[PositiveInt] = Field(default_factory=lambda: [64], description="MLP hidden widths")
    feature_clip: PositiveFloat = Field(5.0, description="clip of the normalised features")
    max_grad_norm: PositiveFloat | None = 1.0
    mu: float = Field(0.5, gt=0.0, le=1.0, description="head mass of the gaps behind gap_ratio")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> ArkdOptions:
        if not self.features:
            raise ValueError("features must name at least one state feature")
        for name in self.features:
            if name not in STATE_FEATURES:
                close = difflib.get_close_matches(name, STATE_FEATURES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown state feature {name!r}{hint} (known: {', '.join(STATE_FEATURES)})")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"features lists a name twice: {self.features}")
        if self.paired_alpha is not None and self.granularity != "batch":
            raise ValueError("paired_alpha needs granularity: batch (a trial update has one alpha per batch)")
        if self.reward == "first_order" and self.granularity != "batch":
            raise ValueError("reward first_order needs granularity: batch (it keeps each term's gradient apart, "
                             "with one alpha per batch)")
        for option, (field, allowed) in _ONLY_WITH.items():
            if option in self.model_fields_set and getattr(self, field) not in allowed:
                raise ValueError(
                    f"{option} only applies to {field}: {' or '.join(sorted(allowed))} "
                    f"({field} is {getattr(self, field)!r})"
                )
        return self


class ArkdWeighting(FklRklStrategy):
    """RL-set FKL/RKL mix: first term FKL with weight alpha, second RKL with 1 - alpha."""

    name = "arkd"
    Options = ArkdOptions
    feedback_requests = frozenset({"probe"})  # default options; instances set their own

    def __init__(self, terms=("fkl", "rkl"), **options: Any) -> None:
        super().__init__(terms, **options)
        import torch

        from arkd_bench.weighting import _policy

        o = self.options
        trial = o.paired_alpha is not None and o.reward != "first_order"
        self.feedback_requests = frozenset({REQUESTS[o.reward]} | ({"trial"} if trial else set()))
        # batch means the loop puts in probe_before / probe_after / batch_after
        self.feedback_criteria = () if o.reward == "rouge" else CRITERIA[o.criterion]
        self.probe_grad_criteria = CRITERIA[o.criterion]  # the criterion of reward first_order
        self._head = _policy.ACTION_HEADS[o.action]()
        self._policy, self._value = _policy.build_nets(
            len(o.features), o.hidden, self._head, o.initial_alpha, o.baseline == "value", o.seed
        )
        params = list(self._policy.parameters())
        if self._value is not None:
            params += list(self._value.parameters())
        self._params = params
        self._opt = torch.optim.Adam(params, lr=o.lr)
        self._gen = torch.Generator().manual_seed(o.seed)
        self._norm = _policy.RunningNorm(len(o.features), o.feature_clip)
        self._step = 0  # optimizer steps observed
        self._since_update = 0  # rewarded steps since the last policy update
        self._pending: list[dict] = []  # actions of the current step (or rouge window), no reward yet
        self._ready: list[dict] = []  # rewarded actions waiting for the next update
        self._prev_alpha = o.initial_alpha
        self._reward_avg: float | None = None  # the ema baseline b
        self._adv_sq = 0.0  # biased ema of (r - b)^2
        self._adv_n = 0
        self._rouge_ref: float | None = None
        self._paired_after: float | None = None  # criterion after the paired_alpha trial, this step
        self._window_sum = 0.0  # rewards of the current reward_horizon window so far
        self._window_n = 0  # steps rewarded in it
        self._last: dict[str, float] = {}

    # -- acting ---------------------------------------------------------------------

    def weights(self, features):
        import torch

        o = self.options
        mask = features.mask.bool()
        step_values = {
            "progress": float(features.progress),
            "prev_alpha": self._prev_alpha,
            "running_reward": self._reward_avg or 0.0,
        }
        per_token = o.granularity == "token"
        raw = (token_state if per_token else batch_state)(features, o.features, step_values)
        self._norm.update(raw)
        if self._step < o.warmup_steps or raw.shape[0] == 0:
            alpha = torch.full((raw.shape[0],), float(o.initial_alpha))
            self._last["alpha"] = float(o.initial_alpha)
        else:
            state = self._norm.normalize(raw)
            with torch.no_grad():
                out = self._policy(state)
                action = self._head.sample(out, self._gen)
                alpha = self._head.to_alpha(action)
                self._last["alpha_expected"] = float(self._head.mean(out).mean())
                self._last["policy_entropy"] = float(self._head.dist(out).entropy().mean())
            self._pending.append({"step": self._step, "state": state, "action": action})
            self._last["alpha"] = float(alpha.mean())
        self._prev_alpha = self._last["alpha"]
        if not per_token:
            return self.in_term_order(alpha[0], 1.0 - alpha[0]).to(mask.device)
        w_fkl, w_rkl = torch.zeros(mask.shape), torch.zeros(mask.shape)
        cpu_mask = mask.cpu()
        w_fkl[cpu_mask] = alpha
        w_rkl[cpu_mask] = 1.0 - alpha
        return self.in_term_order(w_fkl, w_rkl).to(mask.device)

    # -- feedback -------------------------------------------------------------------

    def before_update(self, trial):
        """paired_alpha: measure where the reference alpha's update would have taken the criterion."""
        o = self.options
        self._paired_after = None
        if o.paired_alpha is None or o.reward == "first_order" or self._step < o.warmup_steps:
            return None
        result = trial(self.in_term_order(o.paired_alpha, 1.0 - o.paired_alpha).tolist())
        self._paired_after = self._criterion(result.probe if o.reward == "probe" else result.batch, "after")
        return None

    def observe(self, feedback: Feedback) -> None:
        for key in _PER_STEP_SCALARS:  # logged only at the steps that measured them
            self._last.pop(key, None)
        in_warmup = self._step < self.options.warmup_steps
        reward = self._reward(feedback, in_warmup)
        if self.options.reward != "rouge":
            if reward is None:  # nothing measured for this step: its actions earn nothing
                self._pending = [t for t in self._pending if t["step"] != self._step]
            else:
                reward = self._windowed(reward)
        if reward is not None:
            z = self._advantage(reward)
            for t in self._pending:
                t["reward"], t["z"] = reward, z
            if self._pending:
                self._ready += self._pending
                self._pending = []
                self._since_update += 1
            self._last["reward"] = reward
            self._last["baseline"] = float(self._reward_avg)
        if self._since_update >= self.options.update_every:
            self._update()
        self._step += 1

    def _windowed(self, reward: float) -> float | None:
        """The sum of the rewards of reward_horizon consecutive steps, at the window's last step
        (None before it)."""
        self._window_sum += reward
        self._window_n += 1
        if self._window_n < self.options.reward_horizon:
            return None
        total, self._window_sum, self._window_n = self._window_sum, 0.0, 0
        return total

    def _reward(self, fb: Feedback, in_warmup: bool) -> float | None:
        o = self.options
        if o.reward == "rouge":
            return self._rouge_reward(fb)
        if o.reward == "first_order":
            return self._first_order_reward(fb, in_warmup)
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
                f"feedback_requests={set(self.feedback_requests)}"
            )
        before, after = self._criterion(before, "before"), self._criterion(after, "after")
        if o.paired_alpha is not None:
            if self._paired_after is None:
                if in_warmup:
                    return None
                raise ValueError("arkd weighting with paired_alpha needs the loop to call before_update "
                                 "(it requests 'trial')")
            reward = self._paired_after - after
            self._paired_after = None
        else:
            reward = before - after
        if o.reward_scale == "relative":
            reward /= max(abs(before), 1e-12)
        return reward

    def _first_order_reward(self, fb: Feedback, in_warmup: bool) -> float | None:
        """sum_t w_t(a) slope_t - update: the probe criterion after the reference alpha's update
        minus after the real one, to first order (see ProbeGradient)."""
        o = self.options
        grad = fb.probe_grad
        if grad is None:  # warm-up, or the step's gradient was not finite (a skipped fp16 step)
            return None
        a = 0.5 if o.paired_alpha is None else o.paired_alpha
        f, r = grad.slopes[self.terms[self._fkl_at]], grad.slopes[self.terms[self._rkl_at]]
        reward = a * f + (1.0 - a) * r - grad.update
        if o.reward_scale == "relative":
            reward /= max(abs(grad.criterion), 1e-12)
        return reward

    def _criterion(self, values: dict[str, float], which: str) -> float:
        missing = [n for n in self.feedback_criteria if n not in values]
        if missing:
            raise ValueError(f"arkd reward needs criteria {missing} {which} the update; got {sorted(values)}")
        return sum(float(values[n]) for n in self.feedback_criteria)

    def _rouge_reward(self, fb: Feedback) -> float | None:
        o = self.options
        k = self._step - o.warmup_steps  # index among policy steps; -1: last warmup step
        if k < -1 or (k >= 0 and (k + 1) % o.reward_every):
            return None
        if fb.rouge_probe is None:
            raise ValueError(
                "arkd weighting with reward: rouge needs Feedback.rouge_probe (it requests 'rouge_probe')"
            )
        value = float(fb.rouge_probe())
        ref, self._rouge_ref = self._rouge_ref, value
        self._last["rouge"] = value
        if ref is None:
            self._pending = []  # without a warmup there is no reference for the first window
            return None
        return value - ref

    def _advantage(self, r: float) -> float:
        """z = (r - b) / s from the statistics before r, then fold r into them."""
        o = self.options
        b = self._reward_avg
        if b is None:
            self._reward_avg = r
            return 0.0
        adv = r - b
        self._reward_avg = o.baseline_decay * b + (1.0 - o.baseline_decay) * r
        if not o.reward_norm:
            return adv
        scale = math.sqrt(self._adv_sq / (1.0 - _SCALE_DECAY**self._adv_n)) if self._adv_n else 0.0
        self._adv_sq = _SCALE_DECAY * self._adv_sq + (1.0 - _SCALE_DECAY) * adv * adv
        self._adv_n += 1
        if scale <= 0.0:
            return 0.0
        return max(-_ADV_CLIP, min(_ADV_CLIP, adv / scale))

    # -- learning -------------------------------------------------------------------

    def _update(self) -> None:
        import torch

        o = self.options
        ready, self._ready, self._since_update = self._ready, [], 0
        if not ready:
            return
        states = torch.cat([t["state"] for t in ready])
        actions = torch.cat([t["action"] for t in ready])
        sizes = [len(t["action"]) for t in ready]
        z = torch.cat([torch.full((n,), float(t["z"])) for n, t in zip(sizes, ready)])
        # every buffered step weighs the same; its tokens share that weight (a mean, not
        # a sum, of token log-probs, so the step's scale does not grow with the batch)
        wt = torch.cat([torch.full((n,), 1.0 / (n * len(ready))) for n in sizes])
        dist = self._head.dist(self._policy(states))
        logp, entropy = dist.log_prob(actions), (wt * dist.entropy()).sum()
        adv = z
        value_loss = torch.zeros(())
        if self._value is not None:
            v = self._value(states).squeeze(-1)
            adv = z - v.detach()
            value_loss = (wt * (v - z) ** 2).sum()
        policy_loss = -(wt * logp * adv).sum()
        loss = policy_loss - o.entropy_coef * entropy + o.value_coef * value_loss
        self._opt.zero_grad()
        loss.backward()
        if o.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self._params, o.max_grad_norm)
        self._opt.step()
        self._last["loss"] = loss.item()
        if self._value is not None:
            self._last["value_loss"] = value_loss.item()

    def log_scalars(self) -> dict[str, float]:
        """alpha (sampled, mean over tokens), alpha_expected (the policy's mean alpha; for
        bernoulli P(alpha = 1)), policy_entropy (of alpha for beta/bernoulli, of its logit for
        logit_normal), reward (raw), baseline, loss, value_loss, rouge; each once known."""
        return dict(self._last)

    # -- checkpointing --------------------------------------------------------------

    def _shape(self) -> dict[str, Any]:
        """The options that fix the saved tensors' meaning and shapes."""
        o = self.options
        return {
            "features": list(o.features), "action": o.action, "baseline": o.baseline, "hidden": list(o.hidden)
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "shape": self._shape(),
            "policy": copy.deepcopy(self._policy.state_dict()),
            "value": None if self._value is None else copy.deepcopy(self._value.state_dict()),
            "optimizer": copy.deepcopy(self._opt.state_dict()),
            "generator": self._gen.get_state(),
            "norm": self._norm.state_dict(),
            "step": self._step,
            "since_update": self._since_update,
            "pending": copy.deepcopy(self._pending),
            "ready": copy.deepcopy(self._ready),
            "prev_alpha": self._prev_alpha,
            "reward_avg": self._reward_avg,
            "adv_sq": self._adv_sq,
            "adv_n": self._adv_n,
            "rouge_ref": self._rouge_ref,
            "paired_after": self._paired_after,
            "window_sum": self._window_sum,
            "window_n": self._window_n,
            "last": dict(self._last),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["shape"] != self._shape():
            raise ValueError(
                f"arkd state was saved with {state['shape']}, these options give {self._shape()}"
            )
        self._policy.load_state_dict(state["policy"])
        if self._value is not None:
            self._value.load_state_dict(state["value"])
        self._opt.load_state_dict(copy.deepcopy(state["optimizer"]))
        self._gen.set_state(state["generator"])
        self._norm.load_state_dict(state["norm"])
        self._step = int(state["step"])
        self._since_update = int(state["since_update"])
        self._pending = copy.deepcopy(state["pending"])
        self._ready = copy.deepcopy(state["ready"])
        self._prev_alpha = float(state["prev_alpha"])
        self._reward_avg = state["reward_avg"]
        self._adv_sq = float(state["adv_sq"])
        self._adv_n = int(state["adv_n"])
        self._rouge_ref = state["rouge_ref"]
        self._paired_after = state.get("paired_after")
        self._window_sum = float(state.get("window_sum", 0.0))
        self._window_n = int(state.get("window_n", 0))
        self._last = dict(state["last"])

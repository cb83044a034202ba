"""The arkd weighting: FKL weight alpha sampled by a policy that learns from each step's reward.

One optimizer step s, as the loop drives it:
  weights(features_s)  samples alpha_s at state_s; (state_s, action_s) is buffered
  backward / step      the student updates with alpha_s
  observe(feedback_s)  the reward measured for step s is attached to exactly the actions
                       sampled since the previous observe (all micro-batches of step s),
                       so a log-prob is never paired with a neighbouring step's reward.
Log-probs are recomputed from the buffered (state, action) at update time: the policy
has not changed since it acted, so they are the sampling log-probs, and the buffer can
be saved with the run. The rewards and their advantages: see rewards.py.
"""
from __future__ import annotations

import copy
from typing import Any

from arkd_bench.weighting.arkd.features import batch_state, token_state
from arkd_bench.weighting.arkd.options import ArkdOptions
from arkd_bench.weighting.arkd.rewards import REQUESTS, Advantage, StepReward
from arkd_bench.weighting.arkd.saved import restore_fields, saved_fields
from arkd_bench.weighting.base import Feedback, PassSettings
from arkd_bench.weighting.fkl_rkl import CRITERIA, FklRklStrategy

# log_scalars keys that belong to the step that measured them, not carried to later steps
_PER_STEP_SCALARS = ("reward", "baseline", "rouge", "loss", "value_loss")
# The strategy's own counters and buffers in strategy.pt (attributes _<name>), in file order.
_SAVED = ("step", "since_update", "pending", "ready", "prev_alpha")


class ArkdWeighting(FklRklStrategy):
    """RL-set FKL/RKL mix: first term FKL with weight alpha, second RKL with 1 - alpha."""

    name = "arkd"
    Options = ArkdOptions
    feedback_requests = frozenset({"probe"})  # default options; instances set their own

    def __init__(self, terms=("fkl", "rkl"), **options: Any) -> None:
        super().__init__(terms, **options)
        import torch

        from arkd_bench.weighting.arkd.policy import ACTION_HEADS, RunningNorm, build_nets

        o = self.options
        trial = o.paired_alpha is not None and o.reward != "first_order"
        self.feedback_requests = frozenset({REQUESTS[o.reward]} | ({"trial"} if trial else set()))
        # batch means the loop puts in probe_before / probe_after / batch_after
        self.feedback_criteria = () if o.reward == "rouge" else CRITERIA[o.criterion]
        self.probe_grad_criteria = CRITERIA[o.criterion]  # the criterion of reward first_order
        self._head = ACTION_HEADS[o.action]()
        self._policy, self._value = build_nets(
            len(o.features), o.hidden, self._head, o.initial_alpha, o.baseline == "value", o.seed
        )
        params = list(self._policy.parameters())
        if self._value is not None:
            params += list(self._value.parameters())
        self._params = params
        self._opt = torch.optim.Adam(params, lr=o.lr)
        self._gen = torch.Generator().manual_seed(o.seed)
        self._norm = RunningNorm(len(o.features), o.feature_clip)
        self._rewards = StepReward(o, self.feedback_criteria, (self.terms[self._fkl_at], self.terms[self._rkl_at]),
                                   self.feedback_requests)
        self._baseline = Advantage(o.baseline_decay, o.reward_norm)
        self._step = 0  # optimizer steps observed
        self._since_update = 0  # rewarded steps since the last policy update
        self._pending: list[dict] = []  # actions of the current step (or rouge window), no reward yet
        self._ready: list[dict] = []  # rewarded actions waiting for the next update
        self._prev_alpha = o.initial_alpha
        self._last: dict[str, float] = {}

    @property
    def pass_settings(self) -> PassSettings:
        return PassSettings(mu=self.options.mu)  # the gaps behind the gap_ratio feature

    # -- acting ---------------------------------------------------------------------

    def weights(self, features):
        import torch

        o = self.options
        mask = features.mask.bool()
        step_values = {
            "progress": float(features.progress),
            "prev_alpha": self._prev_alpha,
            "running_reward": self._baseline.reward_avg or 0.0,
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
        a = self.options.paired_alpha
        weights = None if a is None else self.in_term_order(a, 1.0 - a).tolist()
        self._rewards.before_update(trial, weights, in_warmup=self._step < self.options.warmup_steps)
        return None

    def observe(self, feedback: Feedback) -> None:
        for key in _PER_STEP_SCALARS:  # logged only at the steps that measured them
            self._last.pop(key, None)
        in_warmup = self._step < self.options.warmup_steps
        if self.options.reward == "rouge":
            reward = self._rouge_reward(feedback)
        else:
            reward = self._rewards.measure(feedback, in_warmup)
            if reward is None:  # nothing measured for this step: its actions earn nothing
                self._pending = [t for t in self._pending if t["step"] != self._step]
            else:
                reward = self._rewards.windowed(reward)
        if reward is not None:
            z = self._advantage(reward)
            for t in self._pending:
                t["reward"], t["z"] = reward, z
            if self._pending:
                self._ready += self._pending
                self._pending = []
                self._since_update += 1
            self._last["reward"] = reward
            self._last["baseline"] = float(self._baseline.reward_avg)
        if self._since_update >= self.options.update_every:
            self._update()
        self._step += 1

    def _rouge_reward(self, fb: Feedback) -> float | None:
        """The Rouge-L change at the steps that measure it; the actions before the first
        measurement earn nothing (without a warmup there is no reference for them)."""
        measured = self._rewards.rouge(fb, self._step)
        if measured is None:
            return None
        self._last["rouge"], reward = measured
        if reward is None:
            self._pending = []
        return reward

    def _advantage(self, r: float) -> float:
        """z = (r - b) / s from the statistics before r, then fold r into them (rewards.Advantage)."""
        return self._baseline(r)

    # -- learning -------------------------------------------------------------------

    def _update(self) -> None:
        import torch

        from arkd_bench.weighting.arkd.policy import reinforce_loss

        o = self.options
        ready, self._ready, self._since_update = self._ready, [], 0
        if not ready:
            return
        loss, value_loss = reinforce_loss(self._head, self._policy, self._value, ready,
                                          o.entropy_coef, o.value_coef)
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
            **saved_fields(self, _SAVED, prefix="_"),
            **self._baseline.state_dict(),
            **self._rewards.state_dict(),
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
        restore_fields(self, _SAVED, state, prefix="_")
        self._baseline.load_state_dict(state)
        self._rewards.load_state_dict(state)
        self._last = dict(state["last"])

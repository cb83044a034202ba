"""Torch pieces of the ARKD policy: running normalisation, action heads, MLPs, its REINFORCE loss.

Everything runs on the CPU with float32 parameters: the state is a handful of numbers
per batch (or per token), and keeping it off the accelerator makes runs reproducible
across devices.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.distributions import Bernoulli, Beta, Normal

# Keeps a Beta sample's log-density finite (float32 has room for 1 - 1e-6).
_EDGE = 1e-6


class RunningNorm:
    """Per-feature running mean/variance (Welford, merged batch-wise) and clipped z-scores."""

    def __init__(self, dim: int, clip: float) -> None:
        self.clip = clip
        self.count = 0
        self.mean = torch.zeros(dim, dtype=torch.float64)
        self.m2 = torch.zeros(dim, dtype=torch.float64)

    def update(self, x: torch.Tensor) -> None:
        if x.shape[0] == 0:
            return
        x = x.double()
        n_b = x.shape[0]
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * n_b / n)
        self.count = n

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        var = self.m2 / max(self.count, 1)
        z = (x.double() - self.mean) / torch.sqrt(var + 1e-8)
        return z.clamp(-self.clip, self.clip).float()

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean.clone(), "m2": self.m2.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["mean"].shape != self.mean.shape:
            n_saved, n_now = state["mean"].numel(), self.mean.numel()
            raise ValueError(f"saved normaliser has {n_saved} features, expected {n_now}")
        self.count = int(state["count"])
        self.mean = state["mean"].clone().double()
        self.m2 = state["m2"].clone().double()


def _inv_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def _logit(p: float) -> float:
    p = min(max(p, 0.01), 0.99)
    return math.log(p / (1.0 - p))


class BetaHead:
    """alpha ~ Beta(a, b), a, b = 1 + softplus(out): unimodal, so the mean is meaningful."""

    n_out = 2

    def init_bias(self, bias: torch.Tensor, alpha0: float) -> None:
        # mean alpha0, the smaller concentration 1.5 (broad but not flat)
        m = min(max(alpha0, 0.05), 0.95)
        a, b = (1.5, 1.5 * (1 - m) / m) if m <= 0.5 else (1.5 * m / (1 - m), 1.5)
        bias.copy_(torch.tensor([_inv_softplus(a - 1.0), _inv_softplus(b - 1.0)]))

    def dist(self, out: torch.Tensor) -> Beta:
        conc = 1.0 + nn.functional.softplus(out)
        return Beta(conc[..., 0], conc[..., 1])

    def sample(self, out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        conc = 1.0 + nn.functional.softplus(out)
        # Beta as the first coordinate of a Dirichlet: the same draw torch's Beta makes,
        # but from our own generator so the global RNG stays untouched
        x = torch._sample_dirichlet(conc.double(), generator=gen)[..., 0].float()
        return x.clamp(_EDGE, 1.0 - _EDGE)

    def to_alpha(self, action: torch.Tensor) -> torch.Tensor:
        return action

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return self.dist(out).mean


# Gauss-Hermite nodes for E[sigmoid(m + s * x)], x ~ N(0, 1) (probabilists' weights).
_nodes, _weights = np.polynomial.hermite_e.hermegauss(16)
_GH_X = torch.tensor(_nodes, dtype=torch.float32)
_GH_W = torch.tensor(_weights / _weights.sum(), dtype=torch.float32)


class LogitNormalHead:
    """alpha = sigmoid(z), z ~ Normal(m, s); the action is z (log-prob in logit space)."""

    n_out = 2

    def init_bias(self, bias: torch.Tensor, alpha0: float) -> None:
        bias.copy_(torch.tensor([_logit(alpha0), 0.0]))  # centred on alpha0, s = 1

    def dist(self, out: torch.Tensor) -> Normal:
        return Normal(out[..., 0], out[..., 1].clamp(-5.0, 2.0).exp())

    def sample(self, out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        d = self.dist(out)
        return d.loc + d.scale * torch.randn(d.loc.shape, generator=gen)

    def to_alpha(self, action: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(action).clamp(_EDGE, 1.0 - _EDGE)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        d = self.dist(out)
        z = d.loc.unsqueeze(-1) + d.scale.unsqueeze(-1) * _GH_X
        return (torch.sigmoid(z) * _GH_W).sum(-1)


class BernoulliHead:
    """The authors' released variant: p = sigmoid(out), alpha in {0, 1} with P(alpha=1) = p."""

    n_out = 1

    def init_bias(self, bias: torch.Tensor, alpha0: float) -> None:
        bias.fill_(_logit(alpha0))

    def dist(self, out: torch.Tensor) -> Bernoulli:
        return Bernoulli(logits=out[..., 0])

    def sample(self, out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        p = torch.sigmoid(out[..., 0])
        return (torch.rand(p.shape, generator=gen) < p).float()

    def to_alpha(self, action: torch.Tensor) -> torch.Tensor:
        return action

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out[..., 0])


ACTION_HEADS = {"beta": BetaHead, "logit_normal": LogitNormalHead, "bernoulli": BernoulliHead}


def mlp(n_in: int, hidden: list[int], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.Tanh()]
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def build_nets(n_in: int, hidden: list[int], head, alpha0: float, with_value: bool, seed: int):
    """Policy (and value) MLPs, initialised from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = mlp(n_in, hidden, head.n_out)
        value = mlp(n_in, hidden, 1) if with_value else None
    with torch.no_grad():
        last = policy[-1]
        last.weight.mul_(0.01)  # the state barely moves the first actions
        head.init_bias(last.bias, alpha0)
        if value is not None:
            value[-1].weight.zero_()
            value[-1].bias.zero_()
    return policy, value


def reinforce_loss(head, policy: nn.Module, value: nn.Module | None, ready: list[dict],
                   entropy_coef: float, value_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, value_loss) of the rewarded actions `ready` (each with its state, action and
    advantage z): REINFORCE with an entropy bonus, less the value's estimate when there is a
    value head (value_loss is 0 without one)."""
    states = torch.cat([t["state"] for t in ready])
    actions = torch.cat([t["action"] for t in ready])
    sizes = [len(t["action"]) for t in ready]
    z = torch.cat([torch.full((n,), float(t["z"])) for n, t in zip(sizes, ready)])
    # every buffered step weighs the same; its tokens share that weight (a mean, not
    # a sum, of token log-probs, so the step's scale does not grow with the batch)
    wt = torch.cat([torch.full((n,), 1.0 / (n * len(ready))) for n in sizes])
    dist = head.dist(policy(states))
    logp, entropy = dist.log_prob(actions), (wt * dist.entropy()).sum()
    adv = z
    value_loss = torch.zeros(())
    if value is not None:
        v = value(states).squeeze(-1)
        adv = z - v.detach()
        value_loss = (wt * (v - z) ** 2).sum()
    policy_loss = -(wt * logp * adv).sum()
    return policy_loss - entropy_coef * entropy + value_coef * value_loss, value_loss

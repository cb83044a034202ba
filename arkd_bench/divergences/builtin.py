"""The builtin divergences, each with its value and analytic gradient on a shared chunk.

Notation: p teacher, q student, ``lp``/``lq`` their log-probs, all over the vocabulary. Every
``chunk_grad`` returns d value / d lq (log-probs as free coordinates); the pass projects it through
the student's log-softmax. The AB divergence lives in :mod:`.ab`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import Field

from arkd_bench._lazy_torch import torch

from .base import DivergenceOptions, _Builtin
from .chunk import Chunk, log_ratio

if TYPE_CHECKING:
    from torch import Tensor


def _fkl_grad(chunk: Chunk) -> Tensor:
    return torch.neg(chunk.p, out=chunk.buffer("fkl_grad"))


def _rkl_grad(chunk: Chunk) -> Tensor:
    return chunk.rkl_grad


class FKL(_Builtin):
    """Forward KL(p || q): mode-covering."""

    name = "fkl"
    declared_direction = "forward"
    exact_on_support = True  # reads chunk.fkl and chunk.p only

    def chunk_value(self, chunk: Chunk) -> Tensor:
        return chunk.fkl

    def chunk_grad(self, chunk: Chunk) -> Tensor:
        return _fkl_grad(chunk)


class RKL(_Builtin):
    """Reverse KL(q || p): mode-seeking."""

    name = "rkl"
    declared_direction = "reverse"

    def chunk_value(self, chunk: Chunk) -> Tensor:
        return chunk.rkl

    def chunk_grad(self, chunk: Chunk) -> Tensor:
        return _rkl_grad(chunk)


class TVD(_Builtin):
    """Total variation distance 0.5 * sum |p - q| (subgradient 0 where p == q)."""

    name = "tvd"

    def chunk_value(self, chunk: Chunk) -> Tensor:
        return 0.5 * (chunk.p - chunk.q).abs().sum(-1)

    def chunk_grad(self, chunk: Chunk) -> Tensor:
        return 0.5 * chunk.q * (chunk.q - chunk.p).sign()


def _log_mix(la: Tensor, lb: Tensor, w: float) -> Tensor:
    """log(w * a + (1 - w) * b), in log space so tiny probabilities keep their precision."""
    log_w = math.log(w) if w > 0 else -math.inf
    return torch.logaddexp(la + log_w, lb + math.log1p(-w))


class JSDOptions(DivergenceOptions):
    beta: float = Field(0.5, ge=0.0, le=1.0, description="Teacher weight in the mixture m.")


class JSD(_Builtin):
    """Generalised Jensen-Shannon divergence, TRL's convention (GKD, arXiv 2306.13649, eq. 1).

    ``m = beta * p + (1 - beta) * q`` and ``JSD = beta * KL(p || m) + (1 - beta) * KL(q || m)``;
    beta = 0.5 is the usual JSD (at most ln 2). The value tends to 0 at both ends, so the
    endpoints are defined as the KL limits of the normalised value: beta = 0 gives FKL
    KL(p || q) (= lim JSD / beta) and beta = 1 gives RKL KL(q || p) (= lim JSD / (1 - beta)).
    """

    name = "jsd"
    Options = JSDOptions

    @property
    def direction(self) -> str | None:
        """beta < 0.5 leans to FKL (its limit at 0), beta > 0.5 to RKL; 0.5 is symmetric."""
        beta = self.options.beta
        return "forward" if beta < 0.5 else "reverse" if beta > 0.5 else None

    def chunk_value(self, chunk: Chunk) -> Tensor:
        beta = self.options.beta
        if beta == 0.0:
            return chunk.fkl
        if beta == 1.0:
            return chunk.rkl
        lm = _log_mix(chunk.t_logp, chunk.s_logp, beta)
        kl_p = (chunk.p * log_ratio(chunk.t_logp, lm)).sum(-1)
        kl_q = (chunk.q * log_ratio(chunk.s_logp, lm)).sum(-1)
        return beta * kl_p + (1.0 - beta) * kl_q

    def chunk_grad(self, chunk: Chunk) -> Tensor:
        beta = self.options.beta
        if beta == 0.0:
            return _fkl_grad(chunk)
        if beta == 1.0:
            return _rkl_grad(chunk)
        # the terms through m cancel: d/dlq = (1 - beta) * q * (lq - lm)
        lm = _log_mix(chunk.t_logp, chunk.s_logp, beta)
        return (1.0 - beta) * chunk.q * log_ratio(chunk.s_logp, lm)


class SkewOptions(DivergenceOptions):
    alpha: float = Field(
        0.1, ge=0.0, lt=1.0, description="Weight of the divergence's own first argument in the mix."
    )


class SkewFKL(_Builtin):
    """DistiLLM's skew KL (arXiv 2402.03898): KL(p || alpha * p + (1 - alpha) * q).

    alpha = 0 is plain FKL; DistiLLM's default is 0.1. alpha = 1 would be identically 0.
    """

    name = "skew_fkl"
    declared_direction = "forward"
    Options = SkewOptions

    def chunk_value(self, chunk: Chunk) -> Tensor:
        alpha = self.options.alpha
        if alpha == 0.0:
            return chunk.fkl
        lm = _log_mix(chunk.t_logp, chunk.s_logp, alpha)
        return (chunk.p * log_ratio(chunk.t_logp, lm)).sum(-1)

    def chunk_grad(self, chunk: Chunk) -> Tensor:
        alpha = self.options.alpha
        if alpha == 0.0:
            return _fkl_grad(chunk)
        lm = _log_mix(chunk.t_logp, chunk.s_logp, alpha)
        q_over_m = (chunk.s_logp - lm).exp_().nan_to_num_(nan=0.0)  # NaN only where p = q = 0
        return -(1.0 - alpha) * chunk.p * q_over_m


class SkewRKL(_Builtin):
    """DistiLLM's skew reverse KL: KL(q || alpha * q + (1 - alpha) * p); alpha = 0 is RKL."""

    name = "skew_rkl"
    declared_direction = "reverse"
    Options = SkewOptions

    def chunk_value(self, chunk: Chunk) -> Tensor:
        alpha = self.options.alpha
        if alpha == 0.0:
            return chunk.rkl
        lm = _log_mix(chunk.s_logp, chunk.t_logp, alpha)
        return (chunk.q * log_ratio(chunk.s_logp, lm)).sum(-1)

    def chunk_grad(self, chunk: Chunk) -> Tensor:
        alpha = self.options.alpha
        if alpha == 0.0:
            return _rkl_grad(chunk)
        lm = _log_mix(chunk.s_logp, chunk.t_logp, alpha)
        q_over_m = (chunk.s_logp - lm).exp_().nan_to_num_(nan=0.0)
        q = chunk.q
        return q * (log_ratio(chunk.s_logp, lm) + 1.0) - alpha * q * q_over_m


class ToDiOptions(DivergenceOptions):
    sharpness: float = Field(
        1.0, gt=0.0, description="Scale of the log-ratio inside the sigmoid; 1 is the released code."
    )


class ToDi(_Builtin):
    """ToDi (arXiv 2505.16297): FKL and RKL mixed per vocabulary entry.

    ``sum_i w_i p_i log(p_i/q_i) + (1 - w_i) q_i log(q_i/p_i)`` with the weight
    ``w_i = sigmoid(sharpness * (log p_i - log q_i))`` detached: entries the student
    under-estimates lean on FKL, over-estimated ones on RKL. sharpness = 1 matches the authors'
    released implementation; then ``w_i = p_i / (p_i + q_i)`` and the value equals FKL + RKL,
    while the gradient (w held constant) does not.
    """

    name = "todi"
    Options = ToDiOptions

    def _weight(self, chunk: Chunk) -> Tensor:
        z = chunk.t_logp - chunk.s_logp
        if self.options.sharpness != 1.0:
            z = z * self.options.sharpness
        # NaN only where both log-probs are -inf, an entry that contributes 0 either way
        return torch.sigmoid(z).nan_to_num_(nan=0.5).detach()

    def chunk_value(self, chunk: Chunk) -> Tensor:
        w = self._weight(chunk)
        return (w * chunk.p * chunk.log_pq + (1.0 - w) * chunk.q * chunk.log_qp).sum(-1)

    def chunk_grad(self, chunk: Chunk) -> Tensor:
        w = self._weight(chunk)
        return (1.0 - w) * chunk.q * (chunk.log_qp + 1.0) - w * chunk.p

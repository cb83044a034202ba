"""Per-chunk quantities shared by every divergence term and feature of one pass.

A chunk holds the teacher and student log-probabilities of a few token rows. Everything derived
from them (probabilities, log-ratios, FKL, RKL, entropies) is computed at most once per chunk and
read by every term, so a pass costs one log-softmax per model per chunk however many terms it has.

Zero-probability entries (``-inf`` logits) follow the usual conventions: ``0 * log 0 = 0``, an
entry where both models have no mass contributes nothing, and a term that is infinite in exact
arithmetic (e.g. FKL where the teacher has mass and the student has none) is ``+inf``, never NaN.
Chunks without any ``-inf`` (the usual case) skip that bookkeeping.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch
from torch import Tensor


def log_ratio(la: Tensor, lb: Tensor) -> Tensor:
    """``la - lb`` with 0 wherever ``a`` has no mass, so that ``a * log_ratio(la, lb)`` is exact.

    Where ``a = 0`` the difference is ``-inf`` or NaN (both ``-inf``); those entries are multiplied
    by ``a = 0`` in every use, so they become 0. Where ``a > 0`` and ``b = 0`` it stays ``+inf``.
    """
    return (la - lb).nan_to_num_(nan=0.0, neginf=0.0, posinf=math.inf)


class Chunk:
    """Teacher/student log-probabilities of ``n`` rows ``[n, V]`` and lazily cached derivatives."""

    def __init__(
        self,
        t_logp: Tensor,
        s_logp: Tensor,
        *,
        finite: bool | None = None,
        p: Tensor | None = None,
        q: Tensor | None = None,
    ) -> None:
        self.t_logp = t_logp
        self.s_logp = s_logp
        # a pass may already know these; they then replace the lazily computed versions
        known = {"finite": finite, "p": p, "q": q}
        self.__dict__.update({k: v for k, v in known.items() if v is not None})

    @cached_property
    def finite(self) -> bool:
        """True when no log-prob is ``-inf`` (or NaN), so no entry needs the zero-mass rules."""
        return bool(torch.isfinite(self.t_logp.amin()) and torch.isfinite(self.s_logp.amin()))

    @cached_property
    def p(self) -> Tensor:
        """Teacher probabilities."""
        return self.t_logp.exp()

    @cached_property
    def q(self) -> Tensor:
        """Student probabilities."""
        return self.s_logp.exp()

    @cached_property
    def log_pq(self) -> Tensor:
        """``log p - log q``, sanitised for p-weighted sums."""
        if self.finite:
            return self.t_logp - self.s_logp
        return log_ratio(self.t_logp, self.s_logp)

    @cached_property
    def log_qp(self) -> Tensor:
        """``log q - log p``, sanitised for q-weighted sums."""
        if self.finite:
            return self.s_logp - self.t_logp
        return log_ratio(self.s_logp, self.t_logp)

    @cached_property
    def fkl(self) -> Tensor:
        """KL(p || q) per row."""
        return torch.linalg.vecdot(self.p, self.log_pq)

    @cached_property
    def rkl(self) -> Tensor:
        """KL(q || p) per row."""
        if self.finite:  # reuse log p - log q rather than building its negative
            return -torch.linalg.vecdot(self.q, self.log_pq)
        return torch.linalg.vecdot(self.q, self.log_qp)

    @cached_property
    def rkl_grad(self) -> Tensor:
        """d KL(q || p) / d log q (free coordinates): ``q * (1 + log q - log p)``."""
        if self.finite:
            return torch.addcmul(self.q, self.q, self.log_pq, value=-1.0)
        return torch.addcmul(self.q, self.q, self.log_qp)

    @cached_property
    def teacher_entropy(self) -> Tensor:
        return _entropy(self.p, self.t_logp, self.finite)

    @cached_property
    def student_entropy(self) -> Tensor:
        return _entropy(self.q, self.s_logp, self.finite)


def _entropy(prob: Tensor, logp: Tensor, finite: bool) -> Tensor:
    if not finite:  # the clamp only touches entries with prob == 0, whose log is -inf
        logp = logp.clamp(min=torch.finfo(logp.dtype).min)
    return -torch.linalg.vecdot(prob, logp)

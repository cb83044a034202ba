"""Per-chunk quantities shared by every divergence term and feature of one pass.

A chunk holds the teacher and student log-probabilities of a few token rows. Everything derived
from them (probabilities, log-ratios, FKL, RKL, entropies) is computed at most once per chunk and
read by every term, so a pass costs one softmax per model per chunk however many terms it has.

Zero-probability entries (``-inf`` logits) follow the usual conventions: ``0 * log 0 = 0``, an
entry where both models have no mass contributes nothing, and a term that is infinite in exact
arithmetic (e.g. FKL where the teacher has mass and the student has none) is ``+inf``, never NaN.
Chunks without any ``-inf`` (the usual case) skip that bookkeeping.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import TYPE_CHECKING

from arkd_bench._lazy_torch import torch

if TYPE_CHECKING:
    from torch import Tensor


def log_ratio(la: Tensor, lb: Tensor, out: Tensor | None = None) -> Tensor:
    """``la - lb`` with 0 wherever ``a`` has no mass, so that ``a * log_ratio(la, lb)`` is exact.

    Where ``a = 0`` the difference is ``-inf`` or NaN (both ``-inf``); those entries are multiplied
    by ``a = 0`` in every use, so they become 0. Where ``a > 0`` and ``b = 0`` it stays ``+inf``.
    """
    return torch.sub(la, lb, out=out).nan_to_num_(nan=0.0, neginf=0.0, posinf=math.inf)


class Scratch:
    """Chunk-sized tensors reused by every chunk of a pass.

    Allocating fresh ``[n, V]`` tensors per chunk makes the C allocator hand the pages back to the
    OS and fault them in again on the next chunk, which costs as much as the arithmetic. A buffer
    is only valid until the next chunk asks for the same name.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, rows: int, cols: int, dtype: torch.dtype) -> Tensor:
        """A ``[rows, cols]`` tensor of ``dtype`` (uninitialised)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[1] != cols or buf.shape[0] < rows or buf.dtype != dtype:
            buf = torch.empty((rows, cols), dtype=dtype, device=self.device)
            self._buffers[name] = buf
        return buf[:rows]


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
        scratch: Scratch | None = None,
    ) -> None:
        self.t_logp = t_logp
        self.s_logp = s_logp
        self._scratch = scratch
        # a pass may already know these; they then replace the lazily computed versions
        known = {"finite": finite, "p": p, "q": q}
        self.__dict__.update({k: v for k, v in known.items() if v is not None})

    def buffer(self, name: str) -> Tensor | None:
        """A reusable ``[n, V]`` output tensor inside a pass; None (allocate) outside one."""
        if self._scratch is None:
            return None
        return self._scratch.get(name, *self.s_logp.shape, self.s_logp.dtype)

    def rowdot(self, a: Tensor, b: Tensor) -> Tensor:
        """``sum_j a_ij b_ij`` per row, with the product in a reusable buffer."""
        return torch.mul(a, b, out=self.buffer("rowdot")).sum(-1)

    @cached_property
    def finite(self) -> bool:
        """True when no log-prob is ``-inf`` (or NaN), so no entry needs the zero-mass rules."""
        return bool(torch.isfinite(self.t_logp.amin()) and torch.isfinite(self.s_logp.amin()))

    @cached_property
    def p(self) -> Tensor:
        """Teacher probabilities."""
        return torch.exp(self.t_logp, out=self.buffer("p"))

    @cached_property
    def q(self) -> Tensor:
        """Student probabilities."""
        return torch.exp(self.s_logp, out=self.buffer("q"))

    @cached_property
    def log_pq(self) -> Tensor:
        """``log p - log q``, sanitised for p-weighted sums."""
        if self.finite:
            return torch.sub(self.t_logp, self.s_logp, out=self.buffer("log_pq"))
        return log_ratio(self.t_logp, self.s_logp, out=self.buffer("log_pq"))

    @cached_property
    def log_qp(self) -> Tensor:
        """``log q - log p``, sanitised for q-weighted sums."""
        if self.finite:
            return torch.sub(self.s_logp, self.t_logp, out=self.buffer("log_qp"))
        return log_ratio(self.s_logp, self.t_logp, out=self.buffer("log_qp"))

    @cached_property
    def fkl(self) -> Tensor:
        """KL(p || q) per row."""
        return self.rowdot(self.p, self.log_pq)

    @cached_property
    def rkl(self) -> Tensor:
        """KL(q || p) per row."""
        if self.finite:  # reuse log p - log q rather than building its negative
            return -self.rowdot(self.q, self.log_pq)
        return self.rowdot(self.q, self.log_qp)

    @cached_property
    def rkl_grad(self) -> Tensor:
        """d KL(q || p) / d log q (free coordinates): ``q * (1 + log q - log p)``."""
        out = self.buffer("rkl_grad")
        if self.finite:
            return torch.addcmul(self.q, self.q, self.log_pq, value=-1.0, out=out)
        return torch.addcmul(self.q, self.q, self.log_qp, out=out)

    @cached_property
    def teacher_entropy(self) -> Tensor:
        return -self.rowdot(self.p, self._finite_logp(self.t_logp))

    @cached_property
    def student_entropy(self) -> Tensor:
        return -self.rowdot(self.q, self._finite_logp(self.s_logp))

    def _finite_logp(self, logp: Tensor) -> Tensor:
        if self.finite:
            return logp
        # only entries with zero probability are -inf; any finite stand-in times 0 is 0
        return torch.clamp(logp, min=torch.finfo(logp.dtype).min, out=self.buffer("clamped"))

"""A top-k teacher kept sparse until the divergence pass reads it.

Stored top-k log-probs stand for a full distribution: the k kept log-probs exactly, the rest
of the mass spread evenly over the other ``V - k`` entries (`topk_to_dense`). `TopKLogProbs`
carries only the k values and ids per token (what crosses to the device); the pass expands
one chunk of rows at a time on the device (`TopKRows`), or, for a term that is exact on the
support (FKL), never expands the teacher at all (`SupportChunk`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import torch
from torch import Tensor

from .chunk import Chunk


def topk_to_dense(values: Tensor, indices: Tensor, vocab_size: int) -> Tensor:
    """Full log-probs from the top-k ones: the k kept exactly, the rest of the mass
    (1 - sum of the kept probabilities) spread evenly over the other entries."""
    fill = tail_fill(values, vocab_size)
    out = fill.expand(*values.shape[:-1], vocab_size).clone()
    return out.scatter_(-1, indices, values)


def tail_fill(values: Tensor, vocab_size: int) -> Tensor:
    """``[..., 1]``: the log-prob of each entry outside the top k."""
    k = values.shape[-1]
    tail = (1.0 - values.exp().sum(-1, keepdim=True)).clamp_min(1e-30)
    return tail.log() - torch.log(torch.tensor(float(max(vocab_size - k, 1)), device=values.device))


@dataclass
class TopKLogProbs:
    """Teacher log-probs ``[B, L, V]`` held as top-k: ``values`` ``[B, L, k]`` (float32),
    ``indices`` ``[B, L, k]`` (int64) and ``present`` ``[B, L]`` (False where nothing is stored:
    those positions read as zeros, as the dense layout holds them; the loss masks them)."""

    values: Tensor
    indices: Tensor
    present: Tensor
    vocab_size: int

    @property
    def shape(self) -> torch.Size:
        return torch.Size((*self.values.shape[:-1], self.vocab_size))

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    def detach(self) -> TopKLogProbs:
        return self

    def __getitem__(self, key) -> TopKLogProbs:
        """Token-axis indexing (``[:, :-1, :]``, the next-token shift); the vocabulary axis stays whole."""
        key = key if isinstance(key, tuple) else (key,)
        token_axes = self.values.dim() - 1
        if (any(k is Ellipsis for k in key) or len(key) > token_axes + 1
                or (len(key) == token_axes + 1 and key[-1] != slice(None))):
            raise IndexError("a top-k teacher is indexed along its token axes only; "
                             "use .dense() to slice its vocabulary")
        key = key[:token_axes]
        return replace(self, values=self.values[key], indices=self.indices[key], present=self.present[key])

    def dense(self) -> Tensor:
        """The full ``[B, L, V]`` float32 log-probs, as the dense expansion gives them."""
        out = topk_to_dense(self.values, self.indices, self.vocab_size)
        return out.masked_fill_(~self.present.unsqueeze(-1), 0.0)


class TopKRows:
    """Row access to a `TopKLogProbs` for the pass: each chunk's rows expanded on the device
    into a reusable buffer, bit for bit what `TopKLogProbs.dense` holds there."""

    def __init__(self, teacher: TopKLogProbs) -> None:
        k = teacher.values.shape[-1]
        self.values = teacher.values.reshape(-1, k)
        self.indices = teacher.indices.reshape(-1, k)
        self.present = teacher.present.reshape(-1)
        self.vocab_size = teacher.vocab_size

    def take(self, sel, scratch, name: str) -> Tensor:
        values, indices = self.values[sel], self.indices[sel]
        out = scratch.get(name, values.shape[0], self.vocab_size, values.dtype)
        out.copy_(tail_fill(values, self.vocab_size).expand_as(out)).scatter_(-1, indices, values)
        absent = ~self.present[sel]
        if bool(absent.any()):
            out[absent] = 0.0
        return out

    def support(self, sel, temperature: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The teacher at ``temperature`` on the support of a chunk of rows: (log-probs of the
        kept entries ``[n, k]``, their ids, the log-prob of each other entry ``[n, 1]``, and
        the teacher's row log-normaliser at ``temperature`` ``[n]``), in float64, as the
        dense pass's softmax of the expanded row would give them."""
        values, indices = self.values[sel], self.indices[sel]
        # the fill as the dense expansion rounds it; the rest in float64 ([n, k], cheap): a
        # float32 normaliser's rounding would bias every token's FKL by about 1e-7
        wide = wide_dtype(values.device)
        kept, other = values.to(wide) / temperature, tail_fill(values, self.vocab_size).to(wide) / temperature
        n_other = self.vocab_size - values.shape[-1]
        parts = [kept] + ([other + math.log(n_other)] if n_other > 0 else [])
        log_norm = torch.logsumexp(torch.cat(parts, -1), -1)
        return kept - log_norm.unsqueeze(1), indices, other - log_norm.unsqueeze(1), log_norm


def wide_dtype(device: torch.device) -> torch.dtype:
    """float64 for the support's sums, float32 where the device has no float64 (Apple's MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def teacher_rows(teacher, rows_class):
    """Row access for the pass: `TopKRows` for a sparse teacher, else ``rows_class(teacher)``."""
    return TopKRows(teacher) if isinstance(teacher, TopKLogProbs) else rows_class(teacher)


def exact_on_support(div) -> bool:
    """Whether a term's value and gradient are computed from a top-k teacher's support: its
    class says so (`exact_on_support`) in the same class that defines its chunk methods (a
    subclass that changes them falls back to the chunk-by-chunk expansion)."""
    cls = type(div)

    def owner(name: str):
        return next((c for c in cls.__mro__ if name in c.__dict__), None)

    return (bool(getattr(cls, "exact_on_support", False))
            and owner("exact_on_support") is owner("chunk_value") is owner("chunk_grad"))


class SupportChunk(Chunk):
    """A chunk whose teacher is top-k on its support (`TopKRows.support`): no teacher row is
    built for the value; FKL reads `fkl` and, in backward, `p` (its gradient is ``-p``)."""

    def __init__(self, support, s_logp: Tensor, *, q: Tensor | None = None, finite: bool | None = None,
                 scratch=None) -> None:
        self.t_kept, self.ids, self.t_other, self.t_log_norm = support
        super().__init__(None, s_logp, q=q, finite=finite, scratch=scratch)

    @cached_property
    def finite(self) -> bool:
        return bool(torch.isfinite(self.s_logp.amin()) and torch.isfinite(self.t_kept.amin())
                    and torch.isfinite(self.t_other.amin()))

    @cached_property
    def p(self) -> Tensor:
        """Teacher probabilities ``[n, V]`` from the support (backward's gradient needs them)."""
        out = self.buffer("p")
        out = torch.empty_like(self.s_logp) if out is None else out
        out.copy_(self.t_other.exp().expand_as(out))
        return out.scatter_(1, self.ids, self.t_kept.exp().to(out.dtype))

    @cached_property
    def fkl(self) -> Tensor:
        return support_fkl(self.t_kept, self.ids, self.t_other, self.s_logp)


def support_fkl(t_kept: Tensor, ids: Tensor, t_other: Tensor, s_logp_rows: Tensor) -> Tensor:
    """KL(p || q) per row with p a top-k teacher on its support: ``sum_kept p (lp - lq) +
    p_other * sum_others (lp_other - lq)``, where the sum of the student's log-probs over the
    other entries is its sum over all entries minus the kept ones (no teacher row is expanded).
    ``s_logp_rows`` ``[n, V]`` are the student's log-probs; the value comes back in their dtype."""
    wide = wide_dtype(s_logp_rows.device)
    s_kept = s_logp_rows.gather(1, ids).to(wide)
    n_other = s_logp_rows.shape[1] - ids.shape[1]
    value = (t_kept.exp() * (t_kept - s_kept)).sum(-1)
    if n_other > 0:
        # sum_others (lp_other - lq) is a small difference of two sums of V log-probs: summed in
        # float64, or its float32 cancellation error (about V * 1e-7 * |log q|) would show
        s_other = s_logp_rows.sum(-1, dtype=wide) - s_kept.sum(-1)
        other = t_other.squeeze(1).to(wide)
        value = value + other.exp() * (n_other * other - s_other)
    return value.to(s_logp_rows.dtype)

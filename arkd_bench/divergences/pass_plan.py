"""The bookkeeping of the fused pass, chunk by chunk: row access to logits without copies,
the pass's settings (`Plan`), and the forward and backward loops over chunks of rows that the
autograd Functions in `chunk_pass` run."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .akl import head_gaps
from .chunk import Chunk, Scratch
from .features import StepFeatures
from .topk import SupportChunk, teacher_rows


class Rows:
    """Row access to ``[..., V]`` logits without copying them up front.

    ``data`` is an ``[M, V]`` view of their storage. When the rows are not evenly strided (the
    ``logits[:, :-1]`` slice of next-token training), ``where`` maps each logical row to its row
    in ``data``; only truly irregular layouts fall back to one copy.
    """

    def __init__(self, logits: Tensor) -> None:
        vocab = logits.shape[-1]
        self.where: Tensor | None = None
        try:
            self.data = logits.view(-1, vocab)
            return
        except RuntimeError:
            pass
        lead, strides = logits.shape[:-1], logits.stride()
        if logits.numel() == 0 or strides[-1] != 1 or any(st % vocab for st in strides[:-1]):
            self.data = logits.reshape(-1, vocab)
            return
        steps = [st // vocab for st in strides[:-1]]
        span = 1 + sum((n - 1) * st for n, st in zip(lead, steps))
        self.data = logits.as_strided((span, vocab), (vocab, 1))
        where = torch.zeros((), dtype=torch.long, device=logits.device)
        for n, st in zip(lead, steps):
            where = where.unsqueeze(-1) + torch.arange(n, device=logits.device) * st
        self.where = where.reshape(-1)

    def select(self, sel):
        """Selection in ``data`` for a selection of logical rows."""
        return sel if self.where is None else _as_slice(self.where[sel])


def _as_slice(idx: Tensor):
    """A slice when the row indices are one ascending contiguous run (a view, no copy)."""
    first = int(idx[0])
    if idx.numel() == 1 or bool((idx[1:] - idx[:-1] == 1).all()):
        return slice(first, first + idx.numel())
    return idx


@dataclass
class Plan:
    """Non-tensor settings of a pass plus the indices of the unmasked rows."""

    divs: list
    temperature: float
    chunk_size: int
    mu: float
    with_features: bool
    rows: Tensor
    dtype: torch.dtype  # float32, or float64 when the student logits are float64
    labels: Tensor | None = None  # flat label ids: gather the student's log-prob of each
    support: bool = False  # a top-k teacher read on its support (topk.SupportChunk), never expanded

    def selections(self):
        """Logical row selection of each chunk (a slice for a contiguous run)."""
        for start in range(0, self.rows.numel(), self.chunk_size):
            yield _as_slice(self.rows[start : start + self.chunk_size])

    def take(self, rows: Rows, sel, scratch: Scratch, name: str) -> Tensor:
        """The selected rows: a view for a contiguous run, else gathered into a scratch buffer
        (a top-k teacher's rows: expanded into one, on its device)."""
        if not isinstance(rows, Rows):
            return rows.take(sel, scratch, name)
        at = rows.select(sel)
        if isinstance(at, slice):
            return rows.data[at]
        out = scratch.get(name, at.numel(), rows.data.shape[1], rows.data.dtype)
        return torch.index_select(rows.data, 0, at, out=out)

    def softmax(self, logits: Tensor, scratch: Scratch, name: str) -> tuple[Tensor, ...]:
        """Log-probs, probs, row log-normalisers and row max log-probs, with one exp pass.

        The normaliser is ``max x - log max p`` (the max entry of p is at least 1/V, so its log
        is accurate); backward replays ``log p = x - lse`` without another softmax.
        """
        n, vocab = logits.shape
        x = logits
        if x.dtype != self.dtype:
            x = scratch.get(name + ".x", n, vocab, self.dtype).copy_(x)
        if self.temperature != 1.0:
            out = x if x is not logits else scratch.get(name + ".x", n, vocab, self.dtype)
            x = torch.div(x, self.temperature, out=out)
        prob = torch.softmax(x, -1, out=scratch.get(name + ".p", n, vocab, self.dtype))
        x_max = x.amax(-1)
        log_norm = x_max - prob.amax(-1).log()
        logp = torch.sub(x, log_norm.unsqueeze(1), out=scratch.get(name + ".logp", n, vocab, self.dtype))
        return logp, prob, log_norm, x_max - log_norm  # the last is each row's max log-prob

    def log_probs(self, logits: Tensor, log_norm: Tensor, scratch: Scratch, name: str) -> Tensor:
        """``logits / T - log_norm`` in one pass: backward's replay of the forward softmax."""
        out = scratch.get(name, *logits.shape, self.dtype)
        if self.temperature == 1.0 and logits.dtype == self.dtype:
            return torch.sub(logits, log_norm.unsqueeze(1), out=out)
        # float32 (or float64) first operand, so a low-precision input is promoted, not rounded
        return torch.add(-log_norm.unsqueeze(1), logits, alpha=1.0 / self.temperature, out=out)


def _features(chunk: Chunk, mu: float, s_max: Tensor) -> Tensor:
    """The pass's features of one chunk, stacked in ``StepFeatures.COMPUTED`` order."""
    g_head, g_tail, head_size, t_top = head_gaps(
        chunk.t_logp, chunk.p, chunk.q, mu, diff_out=chunk.buffer("abs_diff")
    )
    # the teacher's top-1 entry is a student top-1 (ties in the student count as agreement)
    s_at_t_top = chunk.s_logp.gather(1, t_top.unsqueeze(1)).squeeze(1)
    agree = s_at_t_top == s_max
    return torch.stack(
        [
            chunk.fkl,
            chunk.rkl,
            chunk.teacher_entropy,
            chunk.student_entropy,
            agree.to(chunk.p.dtype),
            g_head,
            g_tail,
            head_size,
        ]
    )


def forward_chunks(plan: Plan, student_chunk, teacher: Tensor, n_rows: int, like: Tensor):
    """Values, features, row log-normalisers and per-chunk finiteness; ``student_chunk(sel,
    scratch)`` gives the student logits of a chunk of rows. The features are the
    ``StepFeatures.COMPUTED`` rows when asked, then always 1.0 where both models' row
    normalisers are finite (NaN or +inf logits make them NaN), then the label log-probs."""
    values = like.new_zeros((len(plan.divs), n_rows), dtype=plan.dtype)
    n_computed = len(StepFeatures.COMPUTED) if plan.with_features else 0
    n_feats = n_computed + 1 + (plan.labels is not None)
    feats = like.new_zeros((n_feats, n_rows), dtype=plan.dtype)
    log_norms = like.new_zeros((2, n_rows), dtype=plan.dtype)
    t_rows = teacher_rows(teacher, Rows)
    scratch = Scratch(like.device)
    finite = []  # per chunk, so backward need not scan for -inf again
    for sel in plan.selections():
        if plan.support:
            s_logp, q, log_norms[1, sel], s_max = plan.softmax(student_chunk(sel, scratch), scratch, "s")
            chunk = SupportChunk(t_rows.support(sel, plan.temperature), s_logp, q=q, scratch=scratch)
            log_norms[0, sel] = chunk.t_log_norm.to(log_norms.dtype)
        else:
            t_in = plan.take(t_rows, sel, scratch, "t.in")
            s_in = student_chunk(sel, scratch)
            t_logp, p, log_norms[0, sel], _ = plan.softmax(t_in, scratch, "t")
            s_logp, q, log_norms[1, sel], s_max = plan.softmax(s_in, scratch, "s")
            chunk = Chunk(t_logp, s_logp, p=p, q=q, scratch=scratch)
        finite.append(chunk.finite)
        values[:, sel] = torch.stack([div.chunk_value(chunk) for div in plan.divs])
        if plan.with_features:
            feats[:n_computed, sel] = _features(chunk, plan.mu, s_max)
        if plan.labels is not None:
            feats[-1, sel] = s_logp.gather(1, plan.labels[sel].unsqueeze(1)).squeeze(1)
    feats[n_computed] = torch.isfinite(log_norms).all(0).to(plan.dtype)
    return values, feats, log_norms, finite


def _replayed_chunk(plan: Plan, t_rows, student_chunk, sel, log_norms: Tensor, fin: bool, scratch: Scratch):
    """Backward's chunk: both models' log-probs replayed from the forward's row normalisers
    (a top-k teacher read on its support instead)."""
    if plan.support:
        s_logp = plan.log_probs(student_chunk(sel, scratch), log_norms[1, sel], scratch, "s.logp")
        return SupportChunk(t_rows.support(sel, plan.temperature), s_logp, finite=fin, scratch=scratch)
    t_in = plan.take(t_rows, sel, scratch, "t.in")
    s_in = student_chunk(sel, scratch)
    return Chunk(
        plan.log_probs(t_in, log_norms[0, sel], scratch, "t.logp"),
        plan.log_probs(s_in, log_norms[1, sel], scratch, "s.logp"),
        finite=fin,
        scratch=scratch,
    )


def logit_grad_chunks(plan: Plan, student_chunk, teacher: Tensor, grad_values: Tensor, log_norms: Tensor,
                       finite: list, target):
    """Per chunk of rows: ``(sel, gradient w.r.t. the student logits)``, or ``(sel, None)`` when
    no term has weight there. ``target(sel)`` may give the tensor to write the gradient
    into (a view of the caller's gradient), else a scratch buffer is used."""
    t_rows = teacher_rows(teacher, Rows)
    scratch = Scratch(grad_values.device)
    for sel, fin in zip(plan.selections(), finite):
        weights = grad_values[:, sel].to(plan.dtype)
        active = [i for i in range(len(plan.divs)) if bool(weights[i].any())]
        if not active:
            yield sel, None
            continue
        chunk = _replayed_chunk(plan, t_rows, student_chunk, sel, log_norms, fin, scratch)
        out = target(sel)
        if out is None:
            out = scratch.get("grad", *chunk.s_logp.shape, plan.dtype)
        for k, i in enumerate(active):
            term_grad, w = plan.divs[i].chunk_grad(chunk), weights[i].unsqueeze(1)
            if k == 0:
                torch.mul(term_grad, w, out=out)
            else:
                out.addcmul_(term_grad, w)
        # through the softmax: dz_j = (G_j - q_j * sum_k G_k) / T
        out.addcmul_(chunk.q, out.sum(-1, keepdim=True), value=-1.0)
        if plan.temperature != 1.0:
            out.div_(plan.temperature)
        yield sel, out

"""The fused pass: every term and feature from one softmax per model per chunk of tokens.

Forward runs chunk by chunk under no_grad and keeps only per-token outputs plus each row's
log-normaliser. Backward replays each chunk's log-probs from those (one subtraction per model),
combines the terms' analytic gradients with respect to the student's log-probs (weighted by the
incoming gradient) and projects them through the log-softmax:
``d/dz_j = (G_j - q_j * sum_k G_k) / T``. Apart from the logit gradient itself, memory is bounded
by a few chunk-sized scratch tensors reused from chunk to chunk, never by ``N x V`` copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .akl import head_gaps, head_mass
from .chunk import Chunk, Scratch
from .features import StepFeatures

if TYPE_CHECKING:
    from .base import Divergence


@dataclass
class DivergenceOutput:
    """``values`` ``[T, *token_shape]`` in the order of ``terms`` (differentiable w.r.t. the
    student logits, 0 where masked) and the step's detached ``features``."""

    values: Tensor
    features: StepFeatures
    label_logp: Tensor | None = None  # with ``target_ids``: the student's log-prob of each label (0 where masked)


def divergence_pass(
    *,
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    terms: Mapping[str, Divergence],
    mu: float = 0.5,
    head: str = "paper",
    temperature: float = 1.0,
    chunk_size: int = 64,
    target_ids: Tensor | None = None,
    lm_head: LinearHead | None = None,
) -> DivergenceOutput:
    """Compute every term of an objective and the step features in one chunked pass.

    ``mask`` (token-shaped, True/1 = scored) excludes prompt and padding tokens: they get 0 and no
    gradient, and their logits are never read. All terms share one log-softmax, so they share
    ``temperature``; a term whose own ``temperature`` option was set to something else is an
    error. ``mu`` is AKL's head mass under the ``head`` convention ("paper" or "official", see
    ``akl``). Values are not multiplied by T^2.

    ``target_ids`` (token-shaped label ids): also return the student's log-prob of each label, read from the
    pass's own log-softmax (at ``temperature``), so a cross-entropy needs no second pass over N x V.

    ``lm_head``: ``student_logits`` are then the student's last hidden states ``[..., H]`` and the
    pass applies the LM head to one chunk of rows at a time, in forward and again in backward,
    so the student's ``N x V`` logits and their gradient never exist (gradients flow to the
    hidden states and the head's parameters).
    """
    labels = list(terms)
    divs = list(terms.values())
    for label, div in terms.items():
        opts = div.options
        if "temperature" in opts.model_fields_set and opts.temperature != temperature:
            raise ValueError(
                f"term {label!r} sets temperature={opts.temperature} but the pass uses "
                f"temperature={temperature}; all terms share one log-softmax, so pass the same value"
            )
    values, feats, token_mask = run_pass(
        student_logits, teacher_logits, mask, divs,
        temperature=temperature, chunk_size=chunk_size, mu=mu, head=head, with_features=True, labels=target_ids,
        lm_head=lm_head,
    )
    label_logp = None
    if target_ids is not None:  # the pass appended it as one more feature row
        label_logp, feats = feats[-1].view(token_mask.shape), feats[:-1]
    shape = token_mask.shape
    values = values.view(len(divs), *shape)
    computed = {name: feats[i].view(shape) for i, name in enumerate(StepFeatures.COMPUTED)}
    features = StepFeatures(
        mask=token_mask,
        terms={label: values[i].detach() for i, label in enumerate(labels)},
        **computed,
    )
    return DivergenceOutput(values=values, features=features, label_logp=label_logp)


def run_pass(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None,
    divs: Sequence[Divergence],
    *,
    temperature: float,
    chunk_size: int = 64,
    mu: float = 0.5,
    head: str = "paper",
    with_features: bool,
    labels: Tensor | None = None,
    lm_head: LinearHead | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Values ``[T, N]``, features ``[F, N]`` (empty unless asked; with ``labels`` one more row,
    the student's label log-probs) and the token mask. With ``lm_head``, ``student_logits`` are
    hidden states and the head is applied chunk by chunk."""
    student_vocab = student_logits.shape if lm_head is None else (*student_logits.shape[:-1], lm_head.vocab_size)
    if tuple(student_vocab) != tuple(teacher_logits.shape):
        raise ValueError(
            f"student and teacher logits differ in shape: {tuple(student_vocab)} vs "
            f"{tuple(teacher_logits.shape)} (vocabularies must agree)"
        )
    if lm_head is not None and student_logits.shape[-1] != lm_head.weight.shape[1]:
        raise ValueError(f"hidden size {student_logits.shape[-1]} != the LM head's input size {lm_head.weight.shape[1]}")
    if student_logits.ndim < 1 or student_vocab[-1] == 0:
        raise ValueError("logits need a non-empty vocabulary axis")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if with_features:
        mu = head_mass(mu, head)  # the descending-prefix mass the head must reach
    token_shape = student_logits.shape[:-1]
    if mask is None:
        token_mask = torch.ones(token_shape, dtype=torch.bool, device=student_logits.device)
    else:
        if mask.shape != token_shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != token shape {tuple(token_shape)}")
        token_mask = mask.to(device=student_logits.device, dtype=torch.bool)
    plan = _Plan(
        divs=list(divs),
        temperature=float(temperature),
        chunk_size=int(chunk_size),
        mu=float(mu),
        with_features=with_features,
        rows=token_mask.reshape(-1).nonzero().squeeze(1),
        dtype=torch.promote_types(student_logits.dtype, torch.float32),
        labels=None if labels is None else labels.reshape(-1).to(student_logits.device).clamp_min(0),
    )
    if lm_head is None:
        values, feats = _FusedPass.apply(student_logits, teacher_logits.detach(), plan)
    else:
        values, feats = _FusedLinearPass.apply(student_logits, lm_head.weight, lm_head.bias,
                                               teacher_logits.detach(), plan, lm_head.dtype or lm_head.weight.dtype)
    return values, feats, token_mask


@dataclass
class LinearHead:
    """A plain linear LM head, ``logits = hidden @ weight.T + bias`` (weight ``[V, H]``).

    ``dtype``: what its matrix products run in, as ``nn.Linear`` does under autocast (the
    autocast dtype under mixed precision, so the logits are rounded as the dense path rounds
    them); default the weight's own dtype. Whatever it is, the weight's and bias's gradients
    are summed over chunks in float32 (float64 for float64 weights) and cast to their dtype
    once, at the end.
    """

    weight: Tensor
    bias: Tensor | None = None
    dtype: torch.dtype | None = None

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]


class _Rows:
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
class _Plan:
    """Non-tensor settings of a pass plus the indices of the unmasked rows."""

    divs: list
    temperature: float
    chunk_size: int
    mu: float
    with_features: bool
    rows: Tensor
    dtype: torch.dtype  # float32, or float64 when the student logits are float64
    labels: Tensor | None = None  # flat label ids: gather the student's log-prob of each

    def selections(self):
        """Logical row selection of each chunk (a slice for a contiguous run)."""
        for start in range(0, self.rows.numel(), self.chunk_size):
            yield _as_slice(self.rows[start : start + self.chunk_size])

    def take(self, rows: _Rows, sel, scratch: Scratch, name: str) -> Tensor:
        """The selected rows: a view for a contiguous run, else gathered into a scratch buffer."""
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


def _forward_chunks(plan: _Plan, student_chunk, teacher: Tensor, n_rows: int, like: Tensor):
    """Values, features, row log-normalisers and per-chunk finiteness; ``student_chunk(sel,
    scratch)`` gives the student logits of a chunk of rows."""
    values = like.new_zeros((len(plan.divs), n_rows), dtype=plan.dtype)
    n_feats = (len(StepFeatures.COMPUTED) if plan.with_features else 0) + (plan.labels is not None)
    feats = like.new_zeros((n_feats, n_rows), dtype=plan.dtype)
    log_norms = like.new_zeros((2, n_rows), dtype=plan.dtype)
    t_rows = _Rows(teacher)
    scratch = Scratch(like.device)
    finite = []  # per chunk, so backward need not scan for -inf again
    for sel in plan.selections():
        t_in = plan.take(t_rows, sel, scratch, "t.in")
        s_in = student_chunk(sel, scratch)
        t_logp, p, log_norms[0, sel], _ = plan.softmax(t_in, scratch, "t")
        s_logp, q, log_norms[1, sel], s_max = plan.softmax(s_in, scratch, "s")
        chunk = Chunk(t_logp, s_logp, p=p, q=q, scratch=scratch)
        finite.append(chunk.finite)
        values[:, sel] = torch.stack([div.chunk_value(chunk) for div in plan.divs])
        if plan.with_features:
            feats[: len(StepFeatures.COMPUTED), sel] = _features(chunk, plan.mu, s_max)
        if plan.labels is not None:
            feats[-1, sel] = s_logp.gather(1, plan.labels[sel].unsqueeze(1)).squeeze(1)
    return values, feats, log_norms, finite


def _logit_grad_chunks(plan: _Plan, student_chunk, teacher: Tensor, grad_values: Tensor, log_norms: Tensor,
                       finite: list, target):
    """Per chunk of rows: ``(sel, gradient w.r.t. the student logits)``, or ``(sel, None)`` when
    no term has weight there. ``target(sel)`` may give the tensor to write the gradient
    into (a view of the caller's gradient), else a scratch buffer is used."""
    t_rows = _Rows(teacher)
    scratch = Scratch(grad_values.device)
    for sel, fin in zip(plan.selections(), finite):
        weights = grad_values[:, sel].to(plan.dtype)
        active = [i for i in range(len(plan.divs)) if bool(weights[i].any())]
        if not active:
            yield sel, None
            continue
        t_in = plan.take(t_rows, sel, scratch, "t.in")
        s_in = student_chunk(sel, scratch)
        chunk = Chunk(
            plan.log_probs(t_in, log_norms[0, sel], scratch, "t.logp"),
            plan.log_probs(s_in, log_norms[1, sel], scratch, "s.logp"),
            finite=fin,
            scratch=scratch,
        )
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


def _forward(ctx, plan: _Plan, student_chunk, teacher: Tensor, n_rows: int, like: Tensor, saved: tuple):
    """An autograd Function's forward: the chunks' values and features; saves ``saved`` plus the
    row log-normalisers for backward."""
    values, feats, log_norms, finite = _forward_chunks(plan, student_chunk, teacher, n_rows, like)
    ctx.save_for_backward(*saved, log_norms)
    ctx.plan, ctx.finite = plan, finite
    ctx.mark_non_differentiable(feats)
    return values, feats


class _FusedPass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, plan: _Plan):
        s_rows = _Rows(student)
        return _forward(ctx, plan, lambda sel, scratch: plan.take(s_rows, sel, scratch, "s.in"), teacher,
                        student.shape[:-1].numel(), student, saved=(student, teacher))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values: Tensor, _grad_feats: Tensor):
        student, teacher, log_norms = ctx.saved_tensors
        plan: _Plan = ctx.plan
        s_rows = _Rows(student)
        # every row is written below; only masked rows need zeros (skips a pass over N x V)
        grad = torch.empty(student.shape, dtype=student.dtype, device=student.device)
        rows = grad.view(-1, grad.shape[-1])
        if plan.rows.numel() < rows.shape[0]:
            unmasked = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
            unmasked[plan.rows] = True
            rows[~unmasked] = 0
        # accumulate straight into the gradient rows when they are a same-dtype view
        same_dtype = rows.dtype == plan.dtype

        def in_place(sel) -> bool:
            return same_dtype and isinstance(sel, slice)

        for sel, out in _logit_grad_chunks(plan, lambda sel, scratch: plan.take(s_rows, sel, scratch, "s.in"),
                                           teacher, grad_values, log_norms, ctx.finite,
                                           target=lambda sel: rows[sel] if in_place(sel) else None):
            if out is None:
                rows[sel] = 0
            elif not in_place(sel):
                rows[sel] = out.to(rows.dtype)  # float32 chunk into a bf16/fp16 gradient
        return grad, None, None


class _FusedLinearPass(torch.autograd.Function):
    """The fused pass with the LM head inside: a chunk's logits are ``hidden[rows] @ W.T + b``
    in the head's compute dtype, computed in forward and again in backward, never kept."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, teacher: Tensor, plan: _Plan,
                dtype: torch.dtype):
        flat = hidden.reshape(-1, hidden.shape[-1])
        ctx.head_dtype = dtype
        w, b = _cast_head(weight, bias, dtype)
        return _forward(ctx, plan, _head_logits(flat, w, b), teacher, flat.shape[0], hidden,
                        saved=(hidden, weight, bias, teacher))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values: Tensor, _grad_feats: Tensor):
        hidden, weight, bias, teacher, log_norms = ctx.saved_tensors
        plan: _Plan = ctx.plan
        w, b = _cast_head(weight, bias, ctx.head_dtype)
        flat = hidden.reshape(-1, hidden.shape[-1])
        grad_hidden = torch.zeros_like(flat)
        # the head's gradients are sums over every chunk: accumulated in float32 (or float64),
        # whatever the weights are stored in, and rounded to their dtype once at the end
        acc_dtype = torch.promote_types(weight.dtype, torch.float32)
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_weight = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device)
        if bias is not None and ctx.needs_input_grad[2]:
            grad_bias = torch.zeros(bias.shape, dtype=acc_dtype, device=bias.device)
        scratch = Scratch(weight.device)
        chunks = _logit_grad_chunks(plan, _head_logits(flat, w, b), teacher, grad_values, log_norms,
                                    ctx.finite, target=lambda sel: None)
        for sel, out in chunks:
            if out is None:
                continue
            g, rows = out.to(w.dtype), flat[sel].to(w.dtype)
            grad_hidden[sel] = (g @ w).to(grad_hidden.dtype)
            if grad_weight is not None:
                if w.dtype == acc_dtype:
                    grad_weight.addmm_(g.t(), rows)
                else:  # the chunk's product in the compute dtype, its sum over chunks in acc_dtype
                    grad_weight += torch.mm(g.t(), rows, out=scratch.get("grad_weight", *w.shape, w.dtype))
            if grad_bias is not None:
                grad_bias += g.sum(0, dtype=acc_dtype)
        return (grad_hidden.view(hidden.shape), None if grad_weight is None else grad_weight.to(weight.dtype),
                None if grad_bias is None else grad_bias.to(bias.dtype), None, None, None)


def _cast_head(weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """The head's parameters in its compute dtype (no copy when they already are)."""
    return weight.to(dtype), None if bias is None else bias.to(dtype)


def _head_logits(flat: Tensor, weight: Tensor, bias: Tensor | None):
    """``student_chunk`` for hidden states ``flat`` ``[N, H]``: a chunk's logits through the head
    (in the dtype of ``weight``, the head's compute dtype)."""
    def student_chunk(sel, scratch) -> Tensor:
        rows = flat[sel].to(weight.dtype)
        return rows @ weight.t() if bias is None else torch.addmm(bias, rows, weight.t())

    return student_chunk

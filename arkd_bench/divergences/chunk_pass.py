"""The fused pass: every term and feature from one softmax per model per chunk of tokens.

Forward runs chunk by chunk under no_grad and keeps only per-token outputs plus each row's
log-normaliser. Backward replays each chunk's log-probs from those (one subtraction per model),
combines the terms' analytic gradients with respect to the student's log-probs (weighted by the
incoming gradient) and projects them through the log-softmax:
``d/dz_j = (G_j - q_j * sum_k G_k) / T``. Apart from the logit gradient itself, memory is bounded
by a few chunk-sized scratch tensors reused from chunk to chunk, never by ``N x V`` copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .akl import head_mass
from .chunk import Chunk, Scratch
from .pass_plan import Plan, Rows, forward_chunks, logit_grad_chunks
from .topk import TopKLogProbs, exact_on_support


class ChunkTerm(Protocol):
    """What the pass needs of a term (a Divergence: this module sits below that interface,
    which calls the pass): its per-row value and its gradient on a chunk."""

    def chunk_value(self, chunk: Chunk) -> Tensor: ...

    def chunk_grad(self, chunk: Chunk) -> Tensor: ...


def run_pass(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None,
    divs: Sequence[ChunkTerm],
    *,
    temperature: float,
    chunk_size: int = 64,
    mu: float = 0.5,
    head: str = "paper",
    with_features: bool,
    labels: Tensor | None = None,
    lm_head: LinearHead | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Values ``[T, N]``, features ``[F, N]`` (``StepFeatures.COMPUTED`` when asked, then a row
    that is 1.0 where both models' distributions are finite, then with ``labels`` the student's
    label log-probs) and the token mask. With ``lm_head``, ``student_logits`` are
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
    plan = Plan(
        divs=list(divs),
        temperature=float(temperature),
        chunk_size=int(chunk_size),
        mu=float(mu),
        with_features=with_features,
        rows=token_mask.reshape(-1).nonzero().squeeze(1),
        dtype=torch.promote_types(student_logits.dtype, torch.float32),
        labels=None if labels is None else labels.reshape(-1).to(student_logits.device).clamp_min(0),
        # a top-k teacher stays on its support where every term is exact there (FKL) and no
        # feature needs its full rows; otherwise each chunk's rows are expanded on the device
        support=(isinstance(teacher_logits, TopKLogProbs) and not with_features
                 and all(exact_on_support(d) for d in divs)),
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

def _forward(ctx, plan: Plan, student_chunk, teacher: Tensor, n_rows: int, like: Tensor, saved: tuple):
    """An autograd Function's forward: the chunks' values and features; saves ``saved`` plus the
    row log-normalisers for backward."""
    values, feats, log_norms, finite = forward_chunks(plan, student_chunk, teacher, n_rows, like)
    # a top-k teacher is not a tensor: kept on ctx, and its place saved as None
    ctx.objects = [None if x is None or isinstance(x, Tensor) else x for x in saved]
    ctx.save_for_backward(*[x if x is None or isinstance(x, Tensor) else None for x in saved], log_norms)
    ctx.plan, ctx.finite = plan, finite
    ctx.mark_non_differentiable(feats)
    return values, feats


def _saved(ctx) -> list:
    """What `_forward` saved, the teacher whatever it is, then the row log-normalisers."""
    *tensors, log_norms = ctx.saved_tensors
    return [t if o is None else o for t, o in zip(tensors, ctx.objects)] + [log_norms]


class _FusedPass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, plan: Plan):
        s_rows = Rows(student)
        return _forward(ctx, plan, lambda sel, scratch: plan.take(s_rows, sel, scratch, "s.in"), teacher,
                        student.shape[:-1].numel(), student, saved=(student, teacher))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values: Tensor, _grad_feats: Tensor):
        student, teacher, log_norms = _saved(ctx)
        plan: Plan = ctx.plan
        s_rows = Rows(student)
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

        for sel, out in logit_grad_chunks(plan, lambda sel, scratch: plan.take(s_rows, sel, scratch, "s.in"),
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
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, teacher: Tensor, plan: Plan,
                dtype: torch.dtype):
        flat = hidden.reshape(-1, hidden.shape[-1])
        ctx.head_dtype = dtype
        w, b = _cast_head(weight, bias, dtype)
        return _forward(ctx, plan, _head_logits(flat, w, b), teacher, flat.shape[0], hidden,
                        saved=(hidden, weight, bias, teacher))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values: Tensor, _grad_feats: Tensor):
        hidden, weight, bias, teacher, log_norms = _saved(ctx)
        plan: Plan = ctx.plan
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
        chunks = logit_grad_chunks(plan, _head_logits(flat, w, b), teacher, grad_values, log_norms,
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

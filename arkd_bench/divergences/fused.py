"""The fused pass: every term and feature from one log-softmax per model per chunk of tokens.

Forward runs chunk by chunk under no_grad and keeps only per-token outputs. Backward recomputes
each chunk's log-softmaxes, combines the terms' analytic gradients with respect to the student's
log-probs (weighted by the incoming gradient) and projects them through the log-softmax:
``d/dz_j = (G_j - q_j * sum_k G_k) / T``. Apart from the logit gradient itself, memory is bounded
by a few chunk-sized tensors, never by ``N x V`` copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .akl import head_gaps
from .chunk import Chunk
from .features import StepFeatures


@dataclass
class DivergenceOutput:
    """``values`` ``[T, *token_shape]`` in the order of ``terms`` (differentiable w.r.t. the
    student logits, 0 where masked) and the step's detached ``features``."""

    values: Tensor
    features: StepFeatures


def divergence_pass(
    *,
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    terms: Mapping[str, object],
    mu: float = 0.5,
    temperature: float = 1.0,
    chunk_size: int = 64,
) -> DivergenceOutput:
    """Compute every term of an objective and the step features in one chunked pass.

    ``mask`` (token-shaped, True/1 = scored) excludes prompt and padding tokens: they get 0 and no
    gradient, and their logits are never read. All terms share one log-softmax, so they share
    ``temperature``; a term whose own ``temperature`` option was set to something else is an
    error. ``mu`` is AKL's head mass. Values are not multiplied by T^2.
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
        temperature=temperature, chunk_size=chunk_size, mu=mu, with_features=True,
    )
    shape = token_mask.shape
    values = values.view(len(divs), *shape)
    computed = {name: feats[i].view(shape) for i, name in enumerate(StepFeatures.COMPUTED)}
    features = StepFeatures(
        mask=token_mask,
        terms={label: values[i].detach() for i, label in enumerate(labels)},
        **computed,
    )
    return DivergenceOutput(values=values, features=features)


def run_pass(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None,
    divs: Sequence[object],
    *,
    temperature: float,
    chunk_size: int = 64,
    mu: float = 0.5,
    with_features: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Values ``[T, N]``, features ``[F, N]`` (empty unless asked) and the token mask."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
            f"{tuple(teacher_logits.shape)} (vocabularies must agree)"
        )
    if student_logits.ndim < 1 or student_logits.shape[-1] == 0:
        raise ValueError("logits need a non-empty vocabulary axis")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if with_features and not 0.0 < mu < 1.0:
        raise ValueError(f"mu must be in (0, 1), got {mu}")
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
    )
    values, feats = _FusedPass.apply(_rows(student_logits), _rows(teacher_logits.detach()), plan)
    return values, feats, token_mask


def _rows(logits: Tensor) -> Tensor:
    """``[N, V]`` view of the logits, or the logits themselves when no view exists (e.g. the
    ``logits[:, :-1]`` slice of next-token training): their rows are then gathered per chunk
    instead of copying all of them up front."""
    try:
        return logits.view(-1, logits.shape[-1])
    except RuntimeError:
        return logits


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

    def selections(self):
        """Row selections of each chunk: a slice for a contiguous run (a view, no copy)."""
        for start in range(0, self.rows.numel(), self.chunk_size):
            idx = self.rows[start : start + self.chunk_size]
            first, last = int(idx[0]), int(idx[-1])
            yield slice(first, last + 1) if last - first + 1 == idx.numel() else idx

    def take(self, x: Tensor, sel) -> Tensor:
        """The selected rows of ``x``, which is ``[N, V]`` or the original ``[..., V]`` logits."""
        if x.dim() == 2:
            return x[sel]
        idx = torch.arange(sel.start, sel.stop, device=x.device) if isinstance(sel, slice) else sel
        return x[torch.unravel_index(idx, x.shape[:-1])]

    def softmax(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log-probs, probs and row log-normalisers of a chunk, with a single exp pass.

        The normaliser is ``max x - log max p`` (the max entry of p is at least 1/V, so its log
        is accurate); backward replays ``log p = x - lse`` without another softmax.
        """
        x = logits.to(self.dtype)
        if self.temperature != 1.0:
            x = x / self.temperature
        prob = torch.softmax(x, dim=-1)
        log_norm = x.amax(-1) - prob.amax(-1).log()
        return x - log_norm.unsqueeze(1), prob, log_norm

    def log_probs(self, logits: Tensor, log_norm: Tensor) -> Tensor:
        """``logits / T - log_norm``: backward's cheap replay of the forward log-softmax."""
        if self.temperature == 1.0:
            return (logits - log_norm.unsqueeze(1)).to(self.dtype)
        return torch.add(-log_norm.unsqueeze(1), logits, alpha=1.0 / self.temperature).to(self.dtype)


def _features(chunk: Chunk, mu: float) -> Tensor:
    """The pass's features of one chunk, stacked in ``StepFeatures.COMPUTED`` order."""
    g_head, g_tail, head_size, t_top = head_gaps(chunk.t_logp, chunk.p, chunk.q, mu)
    # the teacher's top-1 entry is a student top-1 (ties in the student count as agreement)
    s_at_t_top = chunk.s_logp.gather(1, t_top.unsqueeze(1)).squeeze(1)
    agree = s_at_t_top == chunk.s_logp.amax(-1)
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


class _FusedPass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, plan: _Plan):
        n_rows = student.shape[:-1].numel()
        values = student.new_zeros((len(plan.divs), n_rows), dtype=plan.dtype)
        n_feats = len(StepFeatures.COMPUTED) if plan.with_features else 0
        feats = student.new_zeros((n_feats, n_rows), dtype=plan.dtype)
        log_norms = student.new_zeros((2, n_rows), dtype=plan.dtype)
        finite = []  # per chunk, so backward need not scan for -inf again
        for sel in plan.selections():
            t_logp, p, log_norms[0, sel] = plan.softmax(plan.take(teacher, sel))
            s_logp, q, log_norms[1, sel] = plan.softmax(plan.take(student, sel))
            chunk = Chunk(t_logp, s_logp, p=p, q=q)
            finite.append(chunk.finite)
            values[:, sel] = torch.stack([div.chunk_value(chunk) for div in plan.divs])
            if plan.with_features:
                feats[:, sel] = _features(chunk, plan.mu)
        ctx.save_for_backward(student, teacher, log_norms)
        ctx.plan, ctx.finite = plan, finite
        ctx.mark_non_differentiable(feats)
        return values, feats

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values: Tensor, _grad_feats: Tensor):
        student, teacher, log_norms = ctx.saved_tensors
        plan: _Plan = ctx.plan
        # every row is written below; only masked rows need zeros (skips a pass over N x V)
        grad = torch.empty(student.shape, dtype=student.dtype, device=student.device)
        rows = grad.view(-1, grad.shape[-1])
        if plan.rows.numel() < rows.shape[0]:
            unmasked = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
            unmasked[plan.rows] = True
            rows[~unmasked] = 0
        in_place = rows.dtype == plan.dtype
        for sel, finite in zip(plan.selections(), ctx.finite):
            weights = grad_values[:, sel].to(plan.dtype)
            active = [i for i in range(len(plan.divs)) if bool(weights[i].any())]
            if not active:
                rows[sel] = 0
                continue
            chunk = Chunk(
                plan.log_probs(plan.take(teacher, sel), log_norms[0, sel]),
                plan.log_probs(plan.take(student, sel), log_norms[1, sel]),
                finite=finite,
            )
            # accumulate straight into the gradient rows when they are a same-dtype view
            target = rows[sel] if in_place and isinstance(sel, slice) else None
            out = None
            for i in active:
                term_grad, w = plan.divs[i].chunk_grad(chunk), weights[i].unsqueeze(1)
                if out is None:
                    out = torch.mul(term_grad, w, out=target) if target is not None else term_grad * w
                else:
                    out.addcmul_(term_grad, w)
            # through the log-softmax: dz_j = (G_j - q_j * sum_k G_k) / T
            out.addcmul_(chunk.q, out.sum(-1, keepdim=True), value=-1.0)
            if plan.temperature != 1.0:
                out.div_(plan.temperature)
            if target is None:
                rows[sel] = out
        return grad, None, None

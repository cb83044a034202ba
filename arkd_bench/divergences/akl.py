"""AKL head/tail gaps (Wu et al., arXiv 2404.02657) without sorting the whole vocabulary.

The head of a row is the smallest teacher-sorted prefix whose cumulative teacher mass reaches
``mu``; the top-1 entry is always in it. ``g_head`` and ``g_tail`` sum ``|p - q|`` over the head and
over the rest, with q treated as a constant. The head is found with a top-k search; rows whose
top-k mass stays below ``mu`` retry with a larger k and finally an exact full sort, so the result
equals a full sort's. Ties in p at the head boundary may be broken either way, and with mu = 1
the boundary depends on how the float32 cumulative sum rounds near 1.

Two conventions for ``mu`` (``head``):

- ``"paper"`` (default): the head is the smallest descending prefix reaching mass ``mu``, as in
  the paper. The paper's own repository builds it the same way (wutaiqiang/LLM_KD_AKL,
  AKL.py at commit 91853fb, ``get_ratio``: sort descending, tail = inclusive cumulative mass
  > mu, top-1 forced into the head), except that it leaves out the entry whose mass crosses mu.
- ``"official"``: the rule of the authors' maintained implementation (wutaiqiang/KDFlow,
  kdflow/loss/adaptive_kl_div.py at commit cb76855, lines 22-28): sort *ascending*, the tail is
  the least likely entries whose cumulative mass stays <= mu, the head is the rest. The head
  then holds about 1 - mu of the mass (at mu = 0.3, at least 0.7), the paper's head at mass
  1 - mu exactly: an entry is in it iff the mass of the entries more likely than it is below
  1 - mu. So ``official`` is ``paper`` at ``1 - mu`` (mu in [0, 1); at mu = 1 its head is empty).
"""

from __future__ import annotations

import torch
from torch import Tensor

_SEARCH_KS = (64, 256, 4096)  # a full sort follows for rows still unresolved
_BLOCK = 64
HEADS = ("paper", "official")


def head_mass(mu: float, head: str = "paper") -> float:
    """The teacher mass the head must reach for ``mu`` under a convention (module docstring)."""
    if head == "paper":
        if not 0.0 < mu <= 1.0:
            raise ValueError(f"mu must be in (0, 1] with head 'paper', got {mu}")
        return float(mu)
    if head == "official":
        if not 0.0 <= mu < 1.0:
            raise ValueError(f"mu must be in [0, 1) with head 'official' (its head is empty at 1), got {mu}")
        return 1.0 - float(mu)
    raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")


def akl_gaps(
    t_logp: Tensor, s_logp: Tensor, mu: float = 0.5, k: int = 64, head: str = "paper"
) -> tuple[Tensor, Tensor, Tensor]:
    """``(g_head, g_tail, head_size)`` for rows of teacher/student log-probs ``[..., V]``.

    The outputs have the leading shape, are float32 (or float64 for float64 input) and carry no
    gradient. ``k`` is the first top-k size tried (tests use it to force the fallback paths);
    ``head`` is the convention for ``mu`` (module docstring).
    """
    mass = head_mass(mu, head)
    shape = t_logp.shape[:-1]
    with torch.no_grad():
        t = t_logp.reshape(-1, t_logp.shape[-1])
        s = s_logp.reshape(-1, s_logp.shape[-1]).to(t.dtype)
        g_head, g_tail, size, _ = head_gaps(t, t.exp(), s.exp(), mass, ks=(k, *_SEARCH_KS))
    return g_head.view(shape), g_tail.view(shape), size.view(shape)


def head_gaps(
    t_logp: Tensor,
    p: Tensor,
    q: Tensor,
    mu: float,
    ks: tuple[int, ...] = _SEARCH_KS,
    diff_out: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gaps, head sizes and the index of the teacher's top-1 entry for rows ``[n, V]``; the head
    is the smallest descending prefix reaching mass ``mu`` (0: empty).

    p and q are passed in so that a fused pass can share them (and ``diff_out``, a scratch
    buffer for ``|p - q|``).
    """
    n, vocab = t_logp.shape
    diff = torch.sub(p, q, out=diff_out).abs_()
    g_head, size = diff.new_zeros(n), diff.new_zeros(n)
    top1 = torch.zeros(n, dtype=torch.long, device=diff.device)
    rows = torch.arange(n, device=t_logp.device)
    for k in (*sorted({min(k0, vocab) for k0 in ks}), vocab):
        if rows.numel() == 0:
            break
        every_row = rows.numel() == n
        sub = t_logp if every_row else t_logp[rows]
        top_lp, top_idx = _top_k(sub, k) if k < vocab else sub.sort(-1, descending=True)
        if every_row:
            top1 = top_idx[:, 0].clone()
        cum = top_lp.exp().cumsum(-1)
        # exclusive prefix mass: an entry is in the head iff the mass before it is below mu
        in_head = torch.cat([cum.new_zeros(len(rows), 1), cum[:, :-1]], dim=1) < mu
        done = (cum[:, -1] >= mu) | (k == vocab)
        if not every_row or not bool(done.all()):
            rows, top_idx, in_head, keep = rows[done], top_idx[done], in_head[done], rows[~done]
        else:
            keep = rows[:0]
        at = (rows.unsqueeze(1), top_idx)
        picked = diff[at]
        g_head[rows] = (picked * in_head).sum(-1)
        size[rows] = in_head.sum(-1).to(size.dtype)
        # zero the head entries where they live (vocabulary order); what is left is the tail
        diff.index_put_(at, picked * ~in_head)
        rows = keep
    return g_head, diff.sum(-1), size, top1


def _top_k(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``x.topk(k, -1)`` (sorted) for rows ``[n, V]``, faster on a long vocabulary.

    The k largest entries of a row lie in the k blocks of ``_BLOCK`` entries with the largest
    block maxima, so only those ``k * _BLOCK`` candidates are searched (``topk`` itself runs on
    one thread here, the block maxima do not).
    """
    n, vocab = x.shape
    n_full = vocab // _BLOCK
    if 4 * k * _BLOCK > vocab:
        return x.topk(k, dim=-1)
    maxima = x[:, : n_full * _BLOCK].view(n, n_full, _BLOCK).amax(-1)
    if n_full * _BLOCK < vocab:
        maxima = torch.cat([maxima, x[:, n_full * _BLOCK :].amax(-1, keepdim=True)], dim=1)
    blocks = maxima.topk(k, dim=-1).indices
    idx = (blocks.unsqueeze(-1) * _BLOCK + torch.arange(_BLOCK, device=x.device)).view(n, -1)
    beyond = idx >= vocab  # the last, partial block
    cand = x.gather(1, idx.clamp_(max=vocab - 1)).masked_fill_(beyond, -torch.inf)
    values, pos = cand.topk(k, dim=-1)
    return values, idx.gather(1, pos)

"""ABKD's alpha-beta divergence (arXiv 2505.04560), with its limit cases written out exactly.

The family is Cichocki, Cruces and Amari's AB-divergence (Entropy 13(1), 2011). For alpha, beta
and alpha + beta all non-zero::

    D = -1/(alpha beta) sum_i [ p^alpha q^beta - alpha/(alpha+beta) p^(alpha+beta)
                                - beta/(alpha+beta) q^(alpha+beta) ]

and its continuous limits are::

    beta = 0:  1/alpha^2 sum_i [ p^alpha log(p^alpha / q^alpha) - p^alpha + q^alpha ]
    alpha = 0: 1/beta^2  sum_i [ q^beta log(q^beta / p^beta) - q^beta + p^beta ]
    both 0:    1/2 sum_i (log p - log q)^2

so (1, 0) is KL(p || q) and (0, 1) is KL(q || p). Negative parameters are rejected: they raise
tail probabilities of a large vocabulary to negative powers, which overflow. The sums run in
float64 because near the limit lines the general formula divides a small difference by
alpha * beta.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from arkd_bench._lazy_torch import torch

from .base import DivergenceOptions, _Builtin
from .chunk import Chunk, log_ratio

if TYPE_CHECKING:
    from torch import Tensor


class ABOptions(DivergenceOptions):
    # defaults from the ABKD README's CIFAR-100 example (alpha = 0.8, alpha + beta = 1.1)
    alpha: float = Field(0.8, ge=0.0, description="Power on the teacher; (1, 0) is FKL.")
    beta: float = Field(0.3, ge=0.0, description="Power on the student; (0, 1) is RKL.")


class AB(_Builtin):
    """Alpha-beta divergence D^(alpha, beta)(p || q)."""

    name = "ab"
    Options = ABOptions

    @property
    def direction(self) -> str | None:
        """(1, 0) is FKL and (0, 1) RKL: the larger power says which side it leans to."""
        a, b = self.options.alpha, self.options.beta
        return "forward" if a > b else "reverse" if b > a else None

    def chunk_value(self, chunk: Chunk) -> Tensor:
        a, b = self.options.alpha, self.options.beta
        lp, lq = chunk.t_logp.double(), chunk.s_logp.double()
        if a == 0.0 and b == 0.0:
            d = (lp - lq).nan_to_num_(nan=0.0)  # both -inf: no mass on either side
            terms = 0.5 * d.square()
        elif b == 0.0:
            terms = _limit_terms(lp, lq, a)
        elif a == 0.0:
            terms = _limit_terms(lq, lp, b)
        else:
            s = a + b
            terms = -(
                torch.exp(a * lp + b * lq)
                - (a / s) * torch.exp(s * lp)
                - (b / s) * torch.exp(s * lq)
            ) / (a * b)
        return terms.sum(-1).to(chunk.s_logp.dtype)

    def chunk_grad(self, chunk: Chunk) -> Tensor:
        a, b = self.options.alpha, self.options.beta
        lp, lq = chunk.t_logp.double(), chunk.s_logp.double()
        if a == 0.0 and b == 0.0:
            grad = (lq - lp).nan_to_num_(nan=0.0)
        elif b == 0.0:
            grad = (torch.exp(a * lq) - torch.exp(a * lp)) / a
        elif a == 0.0:
            grad = torch.exp(b * lq) * log_ratio(lq, lp)
        else:
            grad = (torch.exp((a + b) * lq) - torch.exp(a * lp + b * lq)) / a
        return grad.to(chunk.s_logp.dtype)


def _limit_terms(lx: Tensor, ly: Tensor, g: float) -> Tensor:
    """Entries of 1/g^2 [x^g log(x^g / y^g) - x^g + y^g] (the beta = 0 line with x = p, g = alpha)."""
    xg, yg = torch.exp(g * lx), torch.exp(g * ly)
    return xg * log_ratio(lx, ly) / g - (xg - yg) / (g * g)

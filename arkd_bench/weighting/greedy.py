"""AKL (arXiv 2404.02657): weight FKL and RKL by where the teacher/student gap lies.

The head of the teacher distribution is the smallest prefix of tokens sorted by teacher
probability whose mass reaches mu (the top-1 token always in); g_head and g_tail are
sum |p - q| over the head and over the rest. FKL is weighted by g_head / (g_head + g_tail)
and RKL by g_tail / (g_head + g_tail): FKL fixes a student that misses the teacher's
head, RKL one that spreads mass over the tail.

The gaps come from the divergence pass, which computes them at its own mu; the loop
reads `strategy.akl_mu` and hands it to the pass, so the recipe's mu is the one used.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from arkd_bench.weighting._features import gap_ratio, masked_mean
from arkd_bench.weighting.base import WeightingStrategy


def check_fkl_rkl_terms(strategy: str, terms: list[str]) -> None:
    """Two terms, the first weighted as FKL and the second as RKL (any labels)."""
    if len(terms) != 2:
        raise ValueError(
            f"{strategy} weighting needs exactly two objective terms, FKL first and RKL second "
            f"(e.g. terms: [fkl, rkl]); got {len(terms)}: {terms}"
        )
    first, second = (t.strip().lower() for t in terms)
    if first == "rkl" or second == "fkl":
        raise ValueError(
            f"{strategy} weighting treats the first term as FKL and the second as RKL; "
            f"got {terms}, which looks swapped (use [fkl, rkl])"
        )


class FklRklStrategy(WeightingStrategy):
    """Base of strategies that weight an (FKL, RKL) pair from AKL's head/tail gaps."""

    @property
    def akl_mu(self) -> float:
        """Head mass the divergence pass must use for g_head / g_tail."""
        return self.options.mu

    def check_terms(self, terms: list[str]) -> None:
        check_fkl_rkl_terms(self.name, terms)


class GreedyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mu: float = Field(0.5, gt=0.0, le=1.0, description="teacher mass of the head (AKL's mu)")
    granularity: Literal["token", "batch"] = Field(
        "token", description="token: one weight pair per token; batch: from the batch-mean gaps"
    )


class GreedyWeighting(FklRklStrategy):
    """AKL weights: first term (FKL) g_head/(g_head+g_tail), second term (RKL) the rest."""

    name = "greedy"
    Options = GreedyOptions

    def weights(self, features):
        import torch

        mask = features.mask.bool()
        g_head, g_tail = features.g_head.float(), features.g_tail.float()
        if self.options.granularity == "batch":
            # ratio of mean gaps: tokens the student already matches weigh little
            w_fkl = gap_ratio(masked_mean(g_head, mask), masked_mean(g_tail, mask))
            out = torch.stack([w_fkl, 1.0 - w_fkl])
            self._last = {"alpha": float(w_fkl)}
        else:
            w_fkl = gap_ratio(g_head, g_tail)
            m = mask.to(w_fkl.dtype)
            out = torch.stack([w_fkl * m, (1.0 - w_fkl) * m])
            self._last = {"alpha": float(masked_mean(w_fkl, mask))}
        self._last["g_head"] = float(masked_mean(g_head, mask))
        self._last["g_tail"] = float(masked_mean(g_tail, mask))
        return out

    def log_scalars(self) -> dict[str, float]:
        return dict(getattr(self, "_last", {}))

"""AKL (arXiv 2404.02657): weight FKL and RKL by where the teacher/student gap lies.

The head of the teacher distribution is the smallest prefix of tokens sorted by teacher
probability whose mass reaches mu (the top-1 token always in); g_head and g_tail are
sum |p - q| over the head and over the rest. FKL is weighted by g_head / (g_head + g_tail)
and RKL by g_tail / (g_head + g_tail): FKL fixes a student that misses the teacher's
head, RKL one that spreads mass over the tail.

The gaps come from the divergence pass, which computes them at its own mu; the strategy
declares the recipe's mu and convention in `pass_settings`, which the loop hands to the
pass, so they are the ones used. `head: official` reads mu as the authors'
maintained code does: the tail is the least likely tokens with mass <= mu, so the head
holds about 1 - mu (see arkd_bench/divergences/akl.py for both rules and their sources).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from arkd_bench.plugins.options import PluginOptions
from arkd_bench.weighting.base import PassSettings
from arkd_bench.weighting.fkl_rkl import FklRklStrategy, gap_ratio, masked_mean


class GreedyOptions(PluginOptions):
    mu: float = Field(0.5, ge=0.0, le=1.0, description="teacher mass of the head (AKL's mu); see `head`")
    head: Literal["paper", "official"] = Field(
        "paper", description="paper: the head is the smallest teacher-sorted prefix reaching mass mu; official: "
        "the authors' code, the tail is the least likely tokens with mass <= mu (head about 1 - mu)"
    )
    granularity: Literal["token", "batch"] = Field(
        "token", description="token: one weight pair per token; batch: from the batch-mean gaps"
    )


    @model_validator(mode="after")
    def _mu_fits_head(self):
        # the same ranges as divergences.akl.head_mass, checked without importing torch
        if self.head == "paper" and self.mu == 0.0:
            raise ValueError("mu must be in (0, 1] with head 'paper' (an empty head has no gap)")
        if self.head == "official" and self.mu == 1.0:
            raise ValueError("mu must be in [0, 1) with head 'official' (at mu = 1 its head is empty)")
        return self


class GreedyWeighting(FklRklStrategy):
    """AKL weights: the FKL term g_head/(g_head+g_tail), the RKL term the rest."""

    name = "greedy"
    Options = GreedyOptions

    @property
    def pass_settings(self) -> PassSettings:
        return PassSettings(mu=self.options.mu, head=self.options.head)

    def weights(self, features):
        mask = features.mask.bool()
        g_head, g_tail = features.g_head.float(), features.g_tail.float()
        if self.options.granularity == "batch":
            # ratio of mean gaps: tokens the student already matches weigh little
            w_fkl = gap_ratio(masked_mean(g_head, mask), masked_mean(g_tail, mask))
            out = self.in_term_order(w_fkl, 1.0 - w_fkl)
            self._last = {"alpha": float(w_fkl)}
        else:
            w_fkl = gap_ratio(g_head, g_tail)
            m = mask.to(w_fkl.dtype)
            out = self.in_term_order(w_fkl * m, (1.0 - w_fkl) * m)
            self._last = {"alpha": float(masked_mean(w_fkl, mask))}
        self._last["g_head"] = float(masked_mean(g_head, mask))
        self._last["g_tail"] = float(masked_mean(g_tail, mask))
        return out

    def log_scalars(self) -> dict[str, float]:
        return dict(getattr(self, "_last", {}))

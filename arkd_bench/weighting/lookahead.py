"""Lookahead: at every step, try each candidate FKL weight and keep the best one.

From the exact pre-update state and on the step's own batch, the loop applies the update
each candidate alpha would make (FKL weight alpha, RKL 1 - alpha), measures the criterion
(on the held-out probe batch by default, in eval mode) and restores the state; the step then
takes the candidate whose criterion ended lowest. It is the best of its candidate grid
(default five alphas) for the immediate reward of that criterion: from the same state, no
strategy choosing among the same candidates gets a larger one-step decrease. It is not a bound
on strategies that choose other alphas (between the grid points), nor on where any strategy
ends a run: the greedy per-step choice need not give the best model after many steps.

Cost per step, on top of a plain step: one backward per term instead of one in all (the
terms' gradients are kept apart), and per candidate one optimizer step plus one forward of
the probe (or of the batch). The loop counts the trial updates it made.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from arkd_bench.plugins.options import PluginOptions
from arkd_bench.weighting.base import PassSettings
from arkd_bench.weighting.fkl_rkl import CRITERIA, FklRklStrategy


class LookaheadOptions(PluginOptions):
    candidates: list[float] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], description="FKL weights alpha to try each step"
    )
    criterion: Literal["fkl+rkl", "tvd", "fkl", "rkl"] = Field(
        "fkl+rkl", description="the criterion whose value after the update decides"
    )
    on: Literal["probe", "batch"] = Field("probe", description="measure it on the held-out probe or the batch")

    @field_validator("candidates")
    @classmethod
    def _in_unit_interval(cls, values: list[float]) -> list[float]:
        if not values:
            raise ValueError("candidates must list at least one alpha")
        if any(not 0.0 <= a <= 1.0 for a in values):
            raise ValueError(f"candidates must lie in [0, 1], got {values}")
        return values


class LookaheadWeighting(FklRklStrategy):
    """Per step, the candidate alpha whose trial update lowers the criterion most."""

    name = "lookahead"
    Options = LookaheadOptions
    observes_criteria = False  # it learns nothing from the real update: only its trials count

    def __init__(self, terms=("fkl", "rkl"), **options) -> None:
        super().__init__(terms, **options)
        self.feedback_requests = frozenset({"trial", "probe" if self.options.on == "probe" else "batch_after"})
        self._alpha = self.options.candidates[len(self.options.candidates) // 2]
        self._last: dict[str, float] = {}

    @property
    def pass_settings(self) -> PassSettings:
        return PassSettings(features=False)  # chooses by trial updates, reads no feature

    def weights(self, features):
        # Provisional: before_update replaces it with the step's best candidate.
        return self.in_term_order(self._alpha, 1.0 - self._alpha)

    def before_update(self, trial):
        o = self.options
        names = CRITERIA[o.criterion]
        values = []
        for alpha in o.candidates:
            result = trial(self.in_term_order(alpha, 1.0 - alpha).tolist())
            measured = result.probe if o.on == "probe" else result.batch
            values.append(sum(float(measured[n]) for n in names))
        best = min(range(len(values)), key=values.__getitem__)  # ties: the earlier candidate
        self._alpha = o.candidates[best]
        self._last = {"alpha": self._alpha, "criterion_best": values[best],
                      "criterion_spread": max(values) - min(values)}
        return self.in_term_order(self._alpha, 1.0 - self._alpha)

    def log_scalars(self) -> dict[str, float]:
        """alpha (chosen), criterion_best (its criterion after the update), criterion_spread
        (worst minus best candidate: what the choice was worth at this step)."""
        return dict(self._last)

    def state_dict(self):
        return {"alpha": self._alpha}

    def load_state_dict(self, state) -> None:
        self._alpha = float(state["alpha"])


"""Scheduled weights: move from a start mix to an end mix over training progress.

With warmup_fraction w the start mix is held for progress < w and the schedule then
runs over the remaining progress: t = (progress - w) / (1 - w), clamped to [0, 1];
weights = start + f(t) * (end - start) with f linear, cosine (slow at both ends) or a
single step at `step_at`.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from arkd_bench.plugins.options import PluginOptions
from arkd_bench.weighting.base import PassSettings, WeightingStrategy


class ScheduleOptions(PluginOptions):
    start: list[float] = Field(description="mix at the start, one non-negative weight per term")
    end: list[float] = Field(description="mix at the end, one non-negative weight per term")
    shape: Literal["linear", "cosine", "step"] = "linear"
    warmup_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="progress spent at `start`")
    step_at: float = Field(0.5, ge=0.0, le=1.0, description="shape step: where (in t) end takes over")

    @model_validator(mode="after")
    def _check(self) -> ScheduleOptions:
        if len(self.start) != len(self.end):
            raise ValueError(f"start has {len(self.start)} weights but end has {len(self.end)}")
        for which, mix in (("start", self.start), ("end", self.end)):
            if any(not math.isfinite(w) or w < 0 for w in mix):
                raise ValueError(f"{which} weights must be finite and >= 0, got {mix}")
        if "step_at" in self.model_fields_set and self.shape != "step":
            raise ValueError(f"step_at only applies to shape: step (shape is {self.shape})")
        return self


class ScheduleWeighting(WeightingStrategy):
    name = "schedule"
    Options = ScheduleOptions

    def check_terms(self, terms: list[str]) -> None:
        n = len(self.options.start)
        if n != len(terms):
            raise ValueError(f"schedule weighting has {n} weights per mix for {len(terms)} terms {terms}")

    def fraction(self, progress: float) -> float:
        """How far (0..1) the mix has moved from start to end at this progress."""
        o = self.options
        t = min(max((progress - o.warmup_fraction) / (1.0 - o.warmup_fraction), 0.0), 1.0)
        if o.shape == "linear":
            return t
        if o.shape == "cosine":
            return 0.5 * (1.0 - math.cos(math.pi * t))
        return 1.0 if t >= o.step_at else 0.0

    def mix(self, progress: float) -> list[float]:
        f = self.fraction(progress)
        return [s + f * (e - s) for s, e in zip(self.options.start, self.options.end)]

    @property
    def pass_settings(self) -> PassSettings:
        return PassSettings(features=False)  # reads only the progress

    def weights(self, features):
        import torch

        self._last = self.mix(float(features.progress))
        return torch.tensor(self._last, dtype=torch.float32, device=features.mask.device)

    def log_scalars(self) -> dict[str, float]:
        last = getattr(self, "_last", None)
        return {} if last is None else {f"w_{t}": w for t, w in zip(self.terms, last)}

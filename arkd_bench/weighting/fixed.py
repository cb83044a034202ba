"""Constant weights: FKL only, RKL only, 0.5/0.5 or any mix."""
from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from arkd_bench.plugins.options import PluginOptions
from arkd_bench.weighting.base import PassSettings, WeightingStrategy


def _weight(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"a weight must be a finite number, got {value}")
    if value < 0:
        raise ValueError(f"a weight must be >= 0, got {value}: a negative weight makes training "
                         "maximise its divergence")
    return value


class FixedOptions(PluginOptions):
    weights: list[Annotated[float, AfterValidator(_weight)]] | None = Field(
        default=None, description="one finite weight >= 0 per objective term, not all 0; "
                                  "default: equal weights summing to 1"
    )

    @field_validator("weights")
    @classmethod
    def _not_all_zero(cls, weights: list[float] | None) -> list[float] | None:
        if weights is not None and weights and not any(weights):
            raise ValueError(f"the weights {weights} are all 0: no term would be trained")
        return weights


class FixedWeighting(WeightingStrategy):
    name = "fixed"
    Options = FixedOptions

    def check_terms(self, terms: list[str]) -> None:
        given = self.options.weights
        if given is not None and len(given) != len(terms):
            raise ValueError(
                f"fixed weighting has {len(given)} weights for {len(terms)} objective terms {terms}"
            )

    @property
    def pass_settings(self) -> PassSettings:
        return PassSettings(features=False)  # constant weights: reads no feature

    def weights(self, features):
        import torch

        given = self.options.weights or [1.0 / len(self.terms)] * len(self.terms)
        return torch.tensor(given, dtype=torch.float32)

    def log_scalars(self) -> dict[str, float]:
        given = self.options.weights or [1.0 / len(self.terms)] * len(self.terms)
        return {f"w_{t}": w for t, w in zip(self.terms, given)}

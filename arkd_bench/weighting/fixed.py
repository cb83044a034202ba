"""Constant weights: FKL only, RKL only, 0.5/0.5 or any mix."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from arkd_bench.weighting.base import WeightingStrategy


class FixedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: list[float] | None = Field(
        default=None, description="one weight per objective term; default: equal weights summing to 1"
    )


class FixedWeighting(WeightingStrategy):
    name = "fixed"
    Options = FixedOptions

    def check_terms(self, terms: list[str]) -> None:
        given = self.options.weights
        if given is not None and len(given) != len(terms):
            raise ValueError(
                f"fixed weighting has {len(given)} weights for {len(terms)} objective terms {terms}"
            )

    def weights(self, features):
        import torch

        given = self.options.weights or [1.0 / len(self.terms)] * len(self.terms)
        return torch.tensor(given, dtype=torch.float32)

    def log_scalars(self) -> dict[str, float]:
        given = self.options.weights or [1.0 / len(self.terms)] * len(self.terms)
        return {f"w_{t}": w for t, w in zip(self.terms, given)}

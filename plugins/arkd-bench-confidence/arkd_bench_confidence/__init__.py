"""Per-token FKL/RKL weights from teacher and student uncertainty (entropy)."""
from __future__ import annotations

from pydantic import Field

from arkd_bench import PluginOptions, WeightingStrategy, hookimpl


class ConfidenceOptions(PluginOptions):
    power: float = Field(1.0, gt=0, description="sharpening exponent on both entropies")


class ConfidenceWeighting(WeightingStrategy):
    """FKL weight H_t^k/(H_t^k+H_s^k), RKL weight the rest, per token."""

    name = "confidence"
    Options = ConfidenceOptions

    def check_terms(self, terms):
        if len(terms) != 2:
            raise ValueError(f"confidence weighting needs two terms (forward KL first, reverse KL second), got {terms}")

    def weights(self, features):
        import torch

        h_t = features.teacher_entropy.clamp_min(0) ** self.options.power
        h_s = features.student_entropy.clamp_min(0) ** self.options.power
        total = h_t + h_s
        fkl = torch.where(total > 0, h_t / total.clamp_min(1e-12), torch.full_like(total, 0.5))
        fkl = fkl * features.mask
        self._last = features.batch_mean(fkl)
        return torch.stack([fkl, (1.0 - fkl) * features.mask])

    def log_scalars(self):
        return {"alpha": getattr(self, "_last", 0.5)}


@hookimpl
def arkd_register_weightings(register):
    register(ConfidenceWeighting)

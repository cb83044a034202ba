"""The options of the arkd weighting, checked at recipe load (no torch import here)."""
from __future__ import annotations

import difflib
from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from arkd_bench.plugins.options import PluginOptions
from arkd_bench.weighting.arkd.features import DEFAULT_STATE_FEATURES, STATE_FEATURES

# Options that only mean something with another option's value: setting them otherwise is an error.
_ONLY_WITH = {
    "reward_every": ("reward", {"rouge"}),
    "criterion": ("reward", {"probe", "batch", "first_order"}),
    "paired_alpha": ("reward", {"probe", "batch", "first_order"}),
    "reward_scale": ("reward", {"probe", "batch", "first_order"}),
    "reward_horizon": ("reward", {"probe", "batch", "first_order"}),
    "value_coef": ("baseline", {"value"}),
}


class ArkdOptions(PluginOptions):
    features: list[str] = Field(
        default_factory=lambda: list(DEFAULT_STATE_FEATURES), description="policy state, see STATE_FEATURES"
    )
    action: Literal["beta", "logit_normal", "bernoulli"] = Field(
        "beta", description="alpha's distribution; bernoulli: alpha in {0, 1} as in the authors' code"
    )
    granularity: Literal["batch", "token"] = Field("batch", description="one alpha per batch or per token")
    reward: Literal["probe", "batch", "rouge", "first_order"] = Field(
        "probe", description="probe/batch: the criterion's decrease over the step; rouge: Rouge-L change; "
                             "first_order: the paired probe reward to first order (no trial update)"
    )
    criterion: Literal["fkl+rkl", "tvd", "fkl", "rkl"] = Field(
        "fkl+rkl", description="alignment criterion whose decrease is the reward (probe, batch, first_order)"
    )
    reward_every: PositiveInt = Field(10, description="reward rouge: steps between Rouge-L probes")
    paired_alpha: float | None = Field(
        None, ge=0.0, le=1.0,
        description="reward probe/batch: subtract the decrease a step with this fixed alpha would give "
                    "from the same state and batch (one extra trial update a step); first_order: the "
                    "reference alpha of its paired reward (unset: 0.5)",
    )
    reward_scale: Literal["absolute", "relative"] = Field(
        "absolute", description="relative: divide the reward by the criterion before the update"
    )
    reward_horizon: PositiveInt = Field(
        1, description="probe/batch/first_order: steps whose summed reward (for probe and batch the "
                       "criterion's decrease over the window) goes to every action of the window"
    )
    baseline: Literal["ema", "value"] = "ema"
    baseline_decay: float = Field(0.9, ge=0.0, lt=1.0, description="decay of the reward moving average")
    value_coef: float = Field(0.5, ge=0.0, description="weight of the value head's squared error")
    reward_norm: bool = Field(True, description="divide advantages by a running rms")
    entropy_coef: float = Field(0.01, ge=0.0)
    lr: PositiveFloat = 1e-3
    update_every: PositiveInt = Field(
        4, description="policy update after this many rewarded steps (reward rouge: measurements)"
    )
    warmup_steps: NonNegativeInt = Field(0, description="steps at initial_alpha, without updates")
    initial_alpha: float = Field(
        0.5, ge=0.0, le=1.0, description="warmup alpha; the policy starts centred on it"
    )
    hidden: list[PositiveInt] = Field(default_factory=lambda: [64], description="MLP hidden widths")
    feature_clip: PositiveFloat = Field(5.0, description="clip of the normalised features")
    max_grad_norm: PositiveFloat | None = 1.0
    mu: float = Field(0.5, gt=0.0, le=1.0, description="head mass of the gaps behind gap_ratio")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> ArkdOptions:
        if not self.features:
            raise ValueError("features must name at least one state feature")
        for name in self.features:
            if name not in STATE_FEATURES:
                close = difflib.get_close_matches(name, STATE_FEATURES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown state feature {name!r}{hint} (known: {', '.join(STATE_FEATURES)})")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"features lists a name twice: {self.features}")
        if self.paired_alpha is not None and self.granularity != "batch":
            raise ValueError("paired_alpha needs granularity: batch (a trial update has one alpha per batch)")
        if self.reward == "first_order" and self.granularity != "batch":
            raise ValueError("reward first_order needs granularity: batch (it keeps each term's gradient apart, "
                             "with one alpha per batch)")
        for option, (field, allowed) in _ONLY_WITH.items():
            if option in self.model_fields_set and getattr(self, field) not in allowed:
                raise ValueError(
                    f"{option} only applies to {field}: {' or '.join(sorted(allowed))} "
                    f"({field} is {getattr(self, field)!r})"
                )
        return self

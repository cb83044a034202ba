"""ARKD (arXiv 2606.29869): a policy network sets the FKL weight alpha by RL.

The policy reads normalised features of the step (features.STATE_FEATURES), samples alpha
in (0, 1) (RKL gets 1 - alpha) and learns by REINFORCE from an immediate reward (rewards),
with a baseline, an entropy bonus and its own Adam optimizer (policy). `strategy` drives them
as the loop calls it; `options` is what a recipe may set, checked without importing torch.
"""
from arkd_bench.weighting.arkd.options import ArkdOptions
from arkd_bench.weighting.arkd.strategy import ArkdWeighting

__all__ = ["ArkdOptions", "ArkdWeighting"]

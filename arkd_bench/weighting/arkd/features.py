"""The ARKD policy's state: named features of the step, one row per batch or per token.

No torch import at module level: recipe validation imports the Options models of the
strategies, and those need only the feature names below.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from arkd_bench.weighting.fkl_rkl import gap_ratio, masked_mean

if TYPE_CHECKING:
    import torch

    from arkd_bench.divergences import StepFeatures

# The ARKD policy's state features; every one is normalised by a running mean/std.
STATE_FEATURES: dict[str, str] = {
    "fkl": "forward KL(p || q) of the token (batch mean at batch granularity)",
    "rkl": "reverse KL(q || p)",
    "gap_ratio": "g_head / (g_head + g_tail): share of |p - q| in the teacher's head (0.5 if both 0)",
    "teacher_entropy": "entropy of the teacher distribution p",
    "student_entropy": "entropy of the student distribution q",
    "top1_agree": "1 where teacher and student argmax agree",
    "ce": "student cross-entropy on the labels (0 when the batch has none)",
    "progress": "training progress in [0, 1]",
    "prev_alpha": "mean FKL weight chosen at the previous call",
    "running_reward": "moving average of the raw reward (0 before the first)",
}
# Features that are the same for every token of a step (broadcast in token granularity).
STEP_LEVEL = frozenset({"progress", "prev_alpha", "running_reward"})
DEFAULT_STATE_FEATURES = list(STATE_FEATURES)


def _token_values(features: StepFeatures, name: str) -> torch.Tensor:
    import torch

    if name == "gap_ratio":
        return gap_ratio(features.g_head.float(), features.g_tail.float())
    if name == "ce":
        ce = features.ce
        return torch.zeros_like(features.fkl, dtype=torch.float32) if ce is None else ce.float()
    return getattr(features, name).float()


def batch_state(features: StepFeatures, names: list[str], step_values: dict[str, float]) -> torch.Tensor:
    """One state row [1, F] summarising the batch (means over unmasked tokens)."""
    import torch

    mask = features.mask
    row = []
    for name in names:
        if name in STEP_LEVEL:
            row.append(float(step_values[name]))
        elif name == "gap_ratio":
            # ratio of the mean gaps, as AKL's batch-level weight (not a mean of ratios)
            head = masked_mean(features.g_head.float(), mask)
            tail = masked_mean(features.g_tail.float(), mask)
            row.append(float(gap_ratio(head, tail)))
        else:
            row.append(float(masked_mean(_token_values(features, name), mask)))
    return torch.tensor([row], dtype=torch.float32)


def token_state(features: StepFeatures, names: list[str], step_values: dict[str, float]) -> torch.Tensor:
    """One state row per unmasked token, [N, F], rows in the order of mask.nonzero()."""
    import torch

    mask = features.mask.bool()
    n = int(mask.sum())
    cols = []
    for name in names:
        if name in STEP_LEVEL:
            cols.append(torch.full((n,), float(step_values[name])))
        else:
            cols.append(_token_values(features, name)[mask].detach().float().cpu())
    return torch.stack(cols, dim=-1) if cols else torch.zeros(n, 0)

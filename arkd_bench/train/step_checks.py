"""The check of what one training micro-batch's plugins returned: the divergences' values
and the weighting's weights, folded into one device synchronisation. It sits above both
kinds' own checks (`divergences.base`, `weighting.base`), which know nothing of each other."""
from __future__ import annotations

from typing import Any

from arkd_bench.divergences.base import raise_for_values, values_ok
from arkd_bench.plugins.output import PluginOutputError
from arkd_bench.weighting.base import weights_ok, weights_problem, weights_shape_problem


def check_step_outputs(*, terms: dict, values: Any, features: Any, strategy: Any, weights: Any, weighting: str,
                       student_logits: Any = None, teacher_logits: Any = None) -> None:
    """What the plugins of one training micro-batch returned: each divergence's values
    (`values` ``[T, *token_shape]`` from the pass, in the order of `terms`, a {label:
    Divergence} mapping) and the weighting's `weights` (`weighting`: its registered name).
    Raises PluginOutputError naming the first plugin at fault; one device synchronisation.

    Where the models' own distributions are not finite (NaN logits: training diverged), no
    plugin is blamed; the loop's loss check reports it."""
    import torch

    mask, step = features.mask, features.step
    problem = weights_shape_problem(weights, len(terms), mask.shape)
    if problem:
        raise PluginOutputError("weighting", weighting, type(strategy), "weights", problem, step=step)
    if features.inputs_finite is not None:
        inputs = features.inputs_finite.all()
    else:  # StepFeatures built by hand
        inputs = torch.isfinite(features.teacher_entropy).all() & torch.isfinite(features.student_entropy).all()
    flags = torch.cat([inputs.view(1), values_ok(values, mask)])
    weights_flag = weights_ok(weights, mask)
    if weights_flag.device == flags.device:
        *flags, weights_fine = torch.cat([flags, weights_flag.view(1)]).tolist()
    else:  # e.g. constant weights made on the CPU: reading their flag waits for nothing
        flags, weights_fine = flags.tolist(), bool(weights_flag)
    inputs_fine, *terms_fine = flags
    if not inputs_fine:
        return
    if not all(terms_fine):
        raise_for_values(terms, values, mask, step=step, student_logits=student_logits, teacher_logits=teacher_logits)
    if not weights_fine:
        raise PluginOutputError("weighting", weighting, type(strategy), "weights",
                                weights_problem(weights, list(terms), mask), step=step)

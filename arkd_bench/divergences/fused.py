"""The public fused pass: every term of an objective and the step features in one call, as
named tensors (the chunked autograd pass itself is in `chunk_pass`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from .chunk_pass import LinearHead, run_pass
from .features import StepFeatures

if TYPE_CHECKING:
    from .base import Divergence


@dataclass
class DivergenceOutput:
    """``values`` ``[T, *token_shape]`` in the order of ``terms`` (differentiable w.r.t. the
    student logits, 0 where masked) and the step's detached ``features``."""

    values: Tensor
    features: StepFeatures
    label_logp: Tensor | None = None  # with ``target_ids``: the student's log-prob of each label (0 where masked)


def divergence_pass(
    *,
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    terms: Mapping[str, Divergence],
    mu: float = 0.5,
    head: str = "paper",
    temperature: float = 1.0,
    chunk_size: int = 64,
    target_ids: Tensor | None = None,
    lm_head: LinearHead | None = None,
    features: bool = True,
) -> DivergenceOutput:
    """Compute every term of an objective and the step features in one chunked pass.

    ``mask`` (token-shaped, True/1 = scored) excludes prompt and padding tokens: they get 0 and no
    gradient, and their logits are never read. All terms share one log-softmax, so they share
    ``temperature``; a term whose own ``temperature`` option was set to something else is an
    error. ``mu`` is AKL's head mass under the ``head`` convention ("paper" or "official", see
    ``akl``). Values are not multiplied by T^2.

    ``target_ids`` (token-shaped label ids): also return the student's log-prob of each label, read from the
    pass's own log-softmax (at ``temperature``), so a cross-entropy needs no second pass over N x V.

    ``lm_head``: ``student_logits`` are then the student's last hidden states ``[..., H]`` and the
    pass applies the LM head to one chunk of rows at a time, in forward and again in backward,
    so the student's ``N x V`` logits and their gradient never exist (gradients flow to the
    hidden states and the head's parameters).

    ``features=False`` skips the ``StepFeatures.COMPUTED`` fields (they are then None; the AKL
    gaps alone cost about as much as the rest of the pass): for callers that read only the
    values. The values and their gradients are the same either way.
    """
    labels = list(terms)
    divs = list(terms.values())
    for label, div in terms.items():
        opts = div.options
        if "temperature" in opts.model_fields_set and opts.temperature != temperature:
            raise ValueError(
                f"term {label!r} sets temperature={opts.temperature} but the pass uses "
                f"temperature={temperature}; all terms share one log-softmax, so pass the same value"
            )
    values, feats, token_mask = run_pass(
        student_logits, teacher_logits, mask, divs,
        temperature=temperature, chunk_size=chunk_size, mu=mu, head=head, with_features=features,
        labels=target_ids, lm_head=lm_head,
    )
    shape = token_mask.shape
    label_logp = None
    if target_ids is not None:  # the pass appended it as one more feature row
        label_logp, feats = feats[-1].view(shape), feats[:-1]
    values = values.view(len(divs), *shape)
    computed = {name: feats[i].view(shape) for i, name in enumerate(StepFeatures.COMPUTED)} if features else {}
    step_features = StepFeatures(
        mask=token_mask,
        terms={label: values[i].detach() for i, label in enumerate(labels)},
        inputs_finite=feats[-1].view(shape) > 0,
        **computed,
    )
    return DivergenceOutput(values=values, features=step_features, label_logp=label_logp)

"""StepFeatures: what a weighting strategy sees about one distillation step."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, ClassVar

from arkd_bench._lazy_torch import torch

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class StepFeatures:
    """Per-token features of one step, all detached, float32, token-shaped and 0 where masked.

    ``terms`` holds each objective term's per-token value keyed by its label. ``g_head`` /
    ``g_tail`` are AKL's gaps and ``head_size`` the number of vocabulary entries in the head;
    ``top1_agree`` is 1.0 where the student's arg-max is a teacher arg-max. These ``COMPUTED``
    fields are None when the pass was asked for none (a strategy whose ``pass_settings`` say
    ``features=False``). ``inputs_finite`` (bool) is True where both models' distributions are
    finite; the pass always fills it. The training loop may fill ``ce`` (cross-entropy on
    labels), ``step`` and ``total_steps``.
    """

    mask: Tensor
    terms: dict[str, Tensor]
    fkl: Tensor | None = None
    rkl: Tensor | None = None
    teacher_entropy: Tensor | None = None
    student_entropy: Tensor | None = None
    top1_agree: Tensor | None = None
    g_head: Tensor | None = None
    g_tail: Tensor | None = None
    head_size: Tensor | None = None
    inputs_finite: Tensor | None = None
    ce: Tensor | None = None
    step: int = 0
    total_steps: int = 0

    #: the token fields computed by the pass, in the order it stacks them
    COMPUTED: ClassVar[tuple[str, ...]] = (
        "fkl",
        "rkl",
        "teacher_entropy",
        "student_entropy",
        "top1_agree",
        "g_head",
        "g_tail",
        "head_size",
    )

    @property
    def progress(self) -> float:
        """Position in training: 0 at the first step, 1 at the last (``step / (total_steps - 1)``),
        so schedules reach their end value; 0 when there is a single step or none."""
        return self.step / (self.total_steps - 1) if self.total_steps > 1 else 0.0

    @property
    def num_tokens(self) -> int:
        """Number of unmasked tokens."""
        return int(self.mask.sum())

    def batch_mean(self, name_or_tensor: str | Tensor) -> float:
        """Mean over unmasked tokens of a field (``"fkl"``), a term (``"terms.<label>"``) or a
        token-shaped tensor; 0.0 when every token is masked."""
        value = self._resolve(name_or_tensor)
        count = self.mask.sum()
        if count == 0:
            return 0.0
        total = torch.where(self.mask, value.detach().double(), 0.0).sum()
        return float(total / count)

    def to_batch_dict(self) -> dict[str, float]:
        """Batch means of every computed feature and term (``terms.<label>`` keys), for logging."""
        out = {name: self.batch_mean(name) for name in self.COMPUTED if getattr(self, name) is not None}
        out.update({f"terms.{label}": self.batch_mean(v) for label, v in self.terms.items()})
        if self.ce is not None:
            out["ce"] = self.batch_mean(self.ce)
        out["num_tokens"] = float(self.num_tokens)
        out["progress"] = self.progress
        return out

    def _resolve(self, name_or_tensor: str | Tensor) -> Tensor:
        if isinstance(name_or_tensor, torch.Tensor):
            value = name_or_tensor
        elif name_or_tensor.startswith("terms."):
            value = self.terms[name_or_tensor.removeprefix("terms.")]
        elif name_or_tensor in _TENSOR_FIELDS:
            value = getattr(self, name_or_tensor)
            if value is None:
                raise ValueError(f"feature {name_or_tensor!r} is not set")
        else:
            raise KeyError(
                f"unknown feature {name_or_tensor!r}; expected one of {_TENSOR_FIELDS} or 'terms.<label>'"
            )
        if value.shape != self.mask.shape:
            raise ValueError(
                f"expected token shape {tuple(self.mask.shape)}, got {tuple(value.shape)}"
            )
        return value


_TENSOR_FIELDS = tuple(
    f.name for f in fields(StepFeatures) if f.name not in ("mask", "terms", "inputs_finite", "step", "total_steps")
)

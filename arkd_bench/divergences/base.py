"""The Divergence interface: validated options, per-token math on log-prob rows, a fused call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field

from arkd_bench._lazy_torch import torch
from arkd_bench.options import PluginOptions

from .chunk import Chunk

if TYPE_CHECKING:
    from torch import Tensor


class DivergenceOptions(PluginOptions):
    """Options every divergence accepts; a divergence subclasses this to add its own."""

    temperature: float = Field(
        1.0, gt=0, description="Logits of both models are divided by T before the softmax."
    )


class Divergence:
    """A token-level divergence between the teacher distribution p and the student q.

    Subclasses set ``name`` and ``Options`` and implement :meth:`per_token`. Two optional hooks let
    a divergence share work inside a fused pass: :meth:`chunk_value` (reuse the cached quantities
    of a :class:`Chunk`) and :meth:`chunk_grad` (an analytic gradient; the default recomputes
    :meth:`per_token` under autograd, one chunk at a time).
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = DivergenceOptions
    #: "forward" for a mode-covering, FKL-like divergence, "reverse" for a mode-seeking,
    #: RKL-like one, None for neither. Strategies that mix an FKL and an RKL term (greedy,
    #: arkd) find their terms by it. Override :attr:`direction` when it depends on options.
    declared_direction: ClassVar[str | None] = None

    def __init__(self, **options: Any) -> None:
        self.options = self.Options(**options)

    @property
    def direction(self) -> str | None:
        """"forward", "reverse" or None for this divergence with its options."""
        return self.declared_direction

    def per_token(self, t_logp: Tensor, s_logp: Tensor) -> Tensor:
        """Divergence of each row: teacher and student log-probs ``[n, V]`` -> ``[n]``.

        The inputs are already temperature-scaled log-softmax outputs (float32 in a pass).
        """
        raise NotImplementedError

    def chunk_value(self, chunk: Chunk) -> Tensor:
        """Per-row value on a shared chunk; override to reuse ``chunk``'s cached tensors."""
        return self.per_token(chunk.t_logp, chunk.s_logp)

    def chunk_grad(self, chunk: Chunk) -> Tensor:
        """d value_i / d s_logp_ij ``[n, V]``, treating the log-probs as free coordinates.

        The pass projects it through the student's log-softmax, so terms that are constant
        along ``s_logp + c`` need no care here.
        """
        s_logp = chunk.s_logp.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self.per_token(chunk.t_logp, s_logp)
            (grad,) = torch.autograd.grad(value.sum(), s_logp)
        return grad

    def __call__(
        self, *, student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        """One value per token (the logits' shape without the vocabulary axis), 0 where masked.

        Differentiable with respect to ``student_logits`` only; chunked like
        :func:`~arkd_bench.divergences.divergence_pass`.
        """
        from .fused import run_pass

        values, _, token_mask = run_pass(
            student_logits,
            teacher_logits,
            mask,
            [self],
            temperature=self.options.temperature,
            with_features=False,
        )
        return values[0].view(token_mask.shape)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.model_dump().items())
        return f"{type(self).__name__}({opts})"


class _Builtin(Divergence):
    """Builtins implement the chunk hooks; ``per_token`` just wraps the rows in a chunk."""

    def per_token(self, t_logp: Tensor, s_logp: Tensor) -> Tensor:
        return self.chunk_value(Chunk(t_logp, s_logp))

    def chunk_value(self, chunk: Chunk) -> Tensor:
        raise NotImplementedError

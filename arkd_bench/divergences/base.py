"""The Divergence interface: validated options, per-token math on log-prob rows, a fused call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field

from arkd_bench._lazy_torch import torch
from arkd_bench.plugins.options import PluginOptions
from arkd_bench.plugins.output import PluginOutputError, check_on_return, name_of

from .chunk import Chunk

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import Tensor

#: A divergence is >= 0; values down to -NEGATIVE_TOLERANCE x max(1, the term's largest |value|
#: in the batch) are taken for rounding, anything below is an error.
NEGATIVE_TOLERANCE = 1e-4


# -- the shape of what a divergence's methods return (checked on return, see Divergence) ----------


def _rows_problem(result: Any, expected: tuple[int, ...], what: str) -> str | None:
    if not isinstance(result, torch.Tensor):
        return f"expected a Tensor of shape {expected} ({what}), got {type(result).__name__}"
    if tuple(result.shape) != expected:
        hint = " (a scalar: return each row's value, not their sum or mean)" if result.dim() == 0 else ""
        return f"expected shape {expected} ({what}), got {tuple(result.shape)}{hint}"
    return None


def _first(args: tuple, kwargs: dict) -> Any:
    return args[0] if args else next(iter(kwargs.values()))


def _check_per_token(div: Divergence, result: Any, *args: Any, **kwargs: Any) -> None:
    t_logp = _first(args, kwargs)
    shape = tuple(t_logp.shape)
    problem = _rows_problem(result, shape[:-1], f"one value per row of the {shape} log-probs")
    if problem:
        raise PluginOutputError("divergence", name_of(div), type(div), "per_token", problem)


def _check_chunk_value(div: Divergence, result: Any, *args: Any, **kwargs: Any) -> None:
    chunk = _first(args, kwargs)
    problem = _rows_problem(result, tuple(chunk.s_logp.shape[:-1]), "one value per row of the chunk")
    if problem:
        raise PluginOutputError("divergence", name_of(div), type(div), "chunk_value", problem)


def _check_chunk_grad(div: Divergence, result: Any, *args: Any, **kwargs: Any) -> None:
    chunk = _first(args, kwargs)
    problem = _rows_problem(result, tuple(chunk.s_logp.shape), "d value / d s_logp, like the chunk's log-probs")
    if problem:
        raise PluginOutputError("divergence", name_of(div), type(div), "chunk_grad", problem)


_SHAPE_CHECKS = {"per_token": _check_per_token, "chunk_value": _check_chunk_value, "chunk_grad": _check_chunk_grad}


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
    #: True where ``chunk_value`` and ``chunk_grad`` read only ``chunk.fkl`` and ``chunk.p`` (FKL,
    #: declared in the class that defines both): with a top-k teacher the pass then computes them
    #: on its support (``divergences/topk.py``) instead of expanding the teacher's rows.
    exact_on_support: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        self.options = self.Options(**options)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The fused pass calls these methods chunk by chunk; the shape of what they return is
        # checked on return (no tensor is read), so a scalar or an [n, V] answer fails naming
        # the divergence instead of broadcasting or failing deep in the pass.
        super().__init_subclass__(**kwargs)
        for method, check in _SHAPE_CHECKS.items():
            check_on_return(cls, method, check)

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
        from .chunk_pass import run_pass

        values, _, token_mask = run_pass(
            student_logits,
            teacher_logits,
            mask,
            [self],
            temperature=self.options.temperature,
            with_features=False,
        )
        if not bool(values_ok(values, token_mask)):
            raise_for_values({name_of(self): self}, values.view(-1, *token_mask.shape), token_mask,
                             student_logits=student_logits, teacher_logits=teacher_logits)
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


# -- what is checked of a divergence's values ---------------------------------------------------


def values_ok(values: Tensor, mask: Tensor) -> Tensor:
    """Per term, a bool on the values' device (not read here: no synchronisation): finite and
    not below the rounding tolerance on every scored token. `values` ``[T, ...]`` are 0 where
    `mask` is False, as the pass returns them."""
    v = values.detach().reshape(values.shape[0], -1)
    finite = torch.isfinite(v).all(1)
    scale = torch.nan_to_num(v.abs(), nan=0.0, posinf=0.0).amax(1).clamp_min(1.0)
    return finite & (v >= -NEGATIVE_TOLERANCE * scale.unsqueeze(1)).all(1)


def _method(div: Divergence) -> str:
    """The method that computes a divergence's values in the pass: its own `chunk_value`, else `per_token`."""
    return "chunk_value" if type(div).chunk_value is not Divergence.chunk_value else "per_token"


def raise_for_values(terms: Mapping[str, Divergence], values: Tensor, mask: Tensor, *, step: int | None = None,
                     student_logits: Tensor | None = None, teacher_logits: Tensor | None = None) -> None:
    """Raise a PluginOutputError for the first term whose `values` (``[T, *token_shape]``) failed
    `values_ok` (failure path: reads the values). Not the divergence's fault, so not raised:
    non-finite values on tokens where a model's logits are NaN or +inf, and +inf where a model
    gives some entry probability 0 (a ``-inf`` logit), which is then the exact value (e.g. FKL
    where only the teacher has mass)."""
    mask = mask.to(values.device).bool()
    logits = [(x.dense() if hasattr(x, "dense") else x).detach()  # a top-k teacher: its full rows
              for x in (student_logits, teacher_logits) if x is not None and x.shape[:-1] == mask.shape]

    def on_rows(bad: Tensor, test) -> bool:  # `test(logits)` anywhere in the rows of scored tokens `bad`
        rows = mask.clone()
        rows[mask] = bad
        return any(bool(test(x[rows.to(x.device)]).any()) for x in logits)

    for i, (label, div) in enumerate(terms.items()):
        scored = values[i].detach().float()[mask]
        nan, pos, neg_inf = scored.isnan(), scored == float("inf"), scored == float("-inf")
        scale = max(1.0, float(torch.nan_to_num(scored.abs(), nan=0.0, posinf=0.0).max())) if scored.numel() else 1.0
        negative = scored < -NEGATIVE_TOLERANCE * scale
        bad = nan | pos | neg_inf
        if bad.any() and on_rows(bad, lambda x: x.isnan() | (x == float("inf"))):
            continue  # the models' outputs are broken there (training diverged), not the divergence
        only_pos = pos.any() and not (nan.any() or neg_inf.any() or negative.any())
        if only_pos and on_rows(pos, lambda x: x == float("-inf")):
            continue  # exact: some entry has no mass in a model
        where = f" of term {label!r}" if label != name_of(div) else ""
        count = f"of {scored.numel()} scored tokens"
        if bad.any():
            kinds = ", ".join(f"{int(n.sum())} {k}" for k, n in (("NaN", nan), ("+inf", pos), ("-inf", neg_inf))
                              if n.any())
            problem = (f"non-finite values{where} on {int(bad.sum())} {count} ({kinds}; "
                       f"first at token {_first_token(mask, bad)})")
            if logits:
                problem += ", where the models' logits are not NaN"
        elif negative.any():
            problem = (f"negative values{where} on {int(negative.sum())} {count} (min {float(scored.min()):g}, "
                       f"first at token {_first_token(mask, negative)}); a divergence is >= 0 (down to "
                       f"-{NEGATIVE_TOLERANCE:g} x its scale for rounding), and minimising a negative one has no floor")
        else:
            continue
        raise PluginOutputError("divergence", name_of(div), type(div), _method(div), problem, step=step)


def _first_token(mask: Tensor, bad: Tensor) -> tuple[int, ...]:
    positions = mask.nonzero()
    return tuple(int(i) for i in positions[int(bad.nonzero()[0])])

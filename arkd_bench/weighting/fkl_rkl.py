"""The shared base of strategies that mix an (FKL, RKL) pair, and the AKL gap readings they use.

greedy, arkd, lookahead and hypergrad all weight one forward-like and one reverse-like term;
`FklRklStrategy` finds which is which and stacks a weight pair in the objective's term order.
No torch import at module level: recipe validation builds these strategies.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from arkd_bench.weighting.base import WeightingStrategy

if TYPE_CHECKING:
    import torch

# The probe or batch criteria (batch means) behind each `criterion` option value.
CRITERIA = {"fkl+rkl": ("fkl", "rkl"), "tvd": ("tvd",), "fkl": ("fkl",), "rkl": ("rkl",)}


def fkl_rkl_positions(strategy: str, terms: list[str], directions: list[str | None] | None) -> tuple[int, int]:
    """Indices of the FKL-like and the RKL-like term among two.

    With `directions` (what each term's divergence declares) the roles come from them, so
    `[skew_rkl, skew_fkl]` is weighted right; without them (a strategy built by hand) the
    first term is taken as FKL and the second as RKL.
    """
    if len(terms) != 2:
        raise ValueError(
            f"{strategy} weighting needs exactly two objective terms, one FKL-like and one RKL-like "
            f"(e.g. terms: [fkl, rkl]); got {len(terms)}: {terms}"
        )
    if directions is not None:
        forward = [i for i, d in enumerate(directions) if d == "forward"]
        reverse = [i for i, d in enumerate(directions) if d == "reverse"]
        if len(forward) != 1 or len(reverse) != 1:
            declared = ", ".join(f"{t}: {d or 'neither'}" for t, d in zip(terms, directions))
            raise ValueError(
                f"{strategy} weighting needs one forward-like (FKL) and one reverse-like (RKL) term; "
                f"the divergences declare {declared}"
            )
        return forward[0], reverse[0]
    first, second = (t.strip().lower() for t in terms)
    if first == "rkl" or second == "fkl":
        raise ValueError(
            f"{strategy} weighting treats the first term as FKL and the second as RKL; "
            f"got {terms}, which looks swapped (use [fkl, rkl])"
        )
    return 0, 1


class FklRklStrategy(WeightingStrategy):
    """Base of strategies that weight an (FKL, RKL) pair; those reading AKL's head/tail gaps
    (greedy, arkd) declare their mu in `pass_settings`."""

    @property
    def akl_mu(self) -> float | None:
        """The head mass of the gaps the pass computes for this strategy (`pass_settings.mu`)."""
        return self.pass_settings.mu

    @property
    def akl_head(self) -> str:
        """How the pass reads that mu (`pass_settings.head`): "paper" or "official"."""
        return self.pass_settings.head

    def check_terms(self, terms: list[str]) -> None:
        self._fkl_at, self._rkl_at = fkl_rkl_positions(self.name, terms, self.directions)

    def in_term_order(self, w_fkl, w_rkl):
        """Stack the FKL and RKL weights (numbers or tensors of one shape) in the order of the
        objective's terms."""
        import torch

        pair = [None, None]
        pair[self._fkl_at], pair[self._rkl_at] = w_fkl, w_rkl
        return torch.stack([torch.as_tensor(w, dtype=torch.float32) for w in pair])


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over unmasked tokens; 0 when every token is masked."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def gap_ratio(g_head: torch.Tensor, g_tail: torch.Tensor) -> torch.Tensor:
    """g_head / (g_head + g_tail), elementwise, 0.5 where both gaps are 0."""
    import torch

    total = g_head + g_tail
    # clamp keeps the unused branch finite, so no NaN leaks through torch.where
    return torch.where(total > 0, g_head / total.clamp_min(1e-30), torch.full_like(total, 0.5))

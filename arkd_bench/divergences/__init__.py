"""Divergences between the teacher distribution p and the student q over the vocabulary.

Pure tensor math: no plugin machinery and no I/O here. ``divergence_pass`` computes every term
of an objective plus the step features from one softmax per model per chunk of tokens.
"""

from typing import TYPE_CHECKING, Any

from .ab import AB
from .base import Divergence, DivergenceOptions
from .builtin import FKL, JSD, RKL, TVD, SkewFKL, SkewRKL, ToDi
from .chunk import Chunk
from .features import StepFeatures

if TYPE_CHECKING:
    from .akl import akl_gaps
    from .chunk_pass import LinearHead
    from .fused import DivergenceOutput, divergence_pass

# Modules that need torch as soon as they are imported (an autograd Function, tensor
# constants): loaded on first use, so registering the divergence classes stays torch-free.
_ON_FIRST_USE = {"akl_gaps": ".akl", "DivergenceOutput": ".fused", "LinearHead": ".chunk_pass",
                 "divergence_pass": ".fused"}


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        import importlib

        return getattr(importlib.import_module(_ON_FIRST_USE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

BUILTIN_DIVERGENCES: dict[str, type[Divergence]] = {
    cls.name: cls for cls in (FKL, RKL, TVD, JSD, SkewFKL, SkewRKL, AB, ToDi)
}

__all__ = [
    "AB",
    "BUILTIN_DIVERGENCES",
    "Chunk",
    "Divergence",
    "DivergenceOptions",
    "DivergenceOutput",
    "FKL",
    "JSD",
    "LinearHead",
    "RKL",
    "SkewFKL",
    "SkewRKL",
    "StepFeatures",
    "TVD",
    "ToDi",
    "akl_gaps",
    "divergence_pass",
]

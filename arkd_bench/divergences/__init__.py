"""Divergences between the teacher distribution p and the student q over the vocabulary.

Pure tensor math: no plugin machinery and no I/O here. ``divergence_pass`` computes every term
of an objective plus the step features from one softmax per model per chunk of tokens.
"""

from .ab import AB
from .akl import akl_gaps
from .base import Divergence, DivergenceOptions
from .builtin import FKL, JSD, RKL, TVD, SkewFKL, SkewRKL, ToDi
from .chunk import Chunk
from .features import StepFeatures
from .fused import DivergenceOutput, divergence_pass

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
    "RKL",
    "SkewFKL",
    "SkewRKL",
    "StepFeatures",
    "TVD",
    "ToDi",
    "akl_gaps",
    "divergence_pass",
]

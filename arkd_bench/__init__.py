"""arkd-bench: a plugin-based harness for knowledge distillation of causal language models.

Public API: `hookimpl` (for plugins), `get_divergence`, `get_weighting`, the
`Divergence`, `WeightingStrategy` and `Metric` base classes and `StepFeatures`
(imported lazily so `import arkd_bench` stays fast).
"""
from __future__ import annotations

from typing import Any

from arkd_bench.hookspecs import hookimpl

__version__ = "0.1.0"

_LAZY = {
    "Divergence": "arkd_bench.divergences",
    "StepFeatures": "arkd_bench.divergences",
    "WeightingStrategy": "arkd_bench.weighting",
    "Feedback": "arkd_bench.weighting",
    "Metric": "arkd_bench.evaluate.base",
    "DatasetSource": "arkd_bench.data.base",
    "Example": "arkd_bench.data.base",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'arkd_bench' has no attribute {name!r}")


def get_divergence(name: str, **options: Any):
    """A registered divergence: `div(student_logits=..., teacher_logits=..., mask=None)` gives
    one value per token."""
    from arkd_bench.plugins import default_plugins

    return default_plugins().create("divergence", name, **options)


def get_weighting(name: str, terms=("fkl", "rkl"), **options: Any):
    """A registered weighting strategy for the objective terms `terms`."""
    from arkd_bench.plugins import default_plugins

    return default_plugins().create("weighting", name, terms=list(terms), **options)


__all__ = ["__version__", "get_divergence", "get_weighting", "hookimpl", *_LAZY]

"""arkd-bench: a plugin-based harness for knowledge distillation of causal language models.

Public API: `hookimpl` (for plugins), `get_divergence`, `get_weighting`, the base class
of every plugin kind (`Divergence`, `WeightingStrategy`, `DatasetSource`, `Metric`,
`Reporter`, `DataPolicy`; see `arkd_bench.plugins.kinds`), `PluginOptions` (the base of every
options model), `StepFeatures`, `Feedback` and `Example`. They are imported on first
use, so `import arkd_bench` stays fast; type checkers and IDEs see them through the
TYPE_CHECKING imports below. Test helpers for plugin authors are in `arkd_bench.testing`;
guides in docs/plugins/.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arkd_bench.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from arkd_bench.data.base import DatasetSource, Example
    from arkd_bench.data_policy.base import DataPolicy
    from arkd_bench.divergences import Divergence, StepFeatures
    from arkd_bench.evaluate.base import Metric
    from arkd_bench.plugins.options import PluginOptions
    from arkd_bench.report.reporters import Reporter
    from arkd_bench.weighting import Feedback, WeightingStrategy

__version__ = "0.1.0"

_LAZY = {
    "Divergence": "arkd_bench.divergences",
    "StepFeatures": "arkd_bench.divergences",
    "WeightingStrategy": "arkd_bench.weighting",
    "Feedback": "arkd_bench.weighting",
    "Metric": "arkd_bench.evaluate.base",
    "DatasetSource": "arkd_bench.data.base",
    "Example": "arkd_bench.data.base",
    "Reporter": "arkd_bench.report.reporters",
    "DataPolicy": "arkd_bench.data_policy.base",
    "PluginOptions": "arkd_bench.plugins.options",
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
    """A registered weighting strategy for the objective terms `terms`, built as a recipe's
    method with that objective builds it (terms that name divergences tell the strategy
    which is forward and which reverse)."""
    from arkd_bench.method import standalone_strategy
    from arkd_bench.plugins import default_plugins

    return standalone_strategy(default_plugins(), name, list(terms), options)


__all__ = ["__version__", "get_divergence", "get_weighting", "hookimpl", *_LAZY]

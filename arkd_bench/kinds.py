"""The one table of plugin kinds: each kind's hook, base class, guide and scaffold.

The plugin manager, the registries, `arkd-bench plugins`, `arkd-bench new-plugin`, the
README's hook table and the docs tests all read this table. A new kind is one row here,
one hook in `hookspecs.py` and one guide in `docs/plugins/` (tests fail until all three
agree). Base classes are named, not imported, so reading the table imports nothing heavy.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class PluginKind:
    name: str  # the registry kind, as `arkd-bench plugins --json` prints it
    hook: str  # the hookspec that registers this kind
    base: str  # "module:Class" every registered class must derive from
    guide: str  # the plugin author's guide, relative to the repository root
    scaffold: bool  # `arkd-bench new-plugin --kind NAME` has templates for it
    summary: str  # what this kind decides, in a few words

    @property
    def base_name(self) -> str:
        return self.base.rpartition(":")[2]

    def base_class(self) -> type:
        module, _, qualname = self.base.partition(":")
        return getattr(importlib.import_module(module), qualname)


PLUGIN_KINDS: dict[str, PluginKind] = {k.name: k for k in (
    PluginKind("divergence", "arkd_register_divergences", "arkd_bench.divergences.base:Divergence",
               "docs/plugins/divergence.md", True, "a token-level teacher/student divergence"),
    PluginKind("weighting", "arkd_register_weightings", "arkd_bench.weighting.base:WeightingStrategy",
               "docs/plugins/weighting.md", True, "how the objective's terms are mixed at each step"),
    PluginKind("dataset", "arkd_register_datasets", "arkd_bench.data.base:DatasetSource",
               "docs/plugins/dataset.md", True, "where prompts and references come from"),
    PluginKind("metric", "arkd_register_metrics", "arkd_bench.evaluate.base:Metric",
               "docs/plugins/metric.md", True, "a score per test example"),
    PluginKind("reporter", "arkd_register_reporters", "arkd_bench.report.reporters:Reporter",
               "docs/plugins/reporter.md", True, "a leaderboard format written from run results"),
    PluginKind("data_policy", "arkd_register_data_policies", "arkd_bench.data_policy.base:DataPolicy",
               "docs/plugins/data_policy.md", False, "where the training sequences come from"),
)}

KINDS: tuple[str, ...] = tuple(PLUGIN_KINDS)


def kind_of_hook(hook: str) -> PluginKind:
    return next(k for k in PLUGIN_KINDS.values() if k.hook == hook)

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
    scaffold: bool  # `arkd-bench new-plugin --kind NAME` has templates for it

    @property
    def guide(self) -> str:
        """The plugin author's guide, relative to the repository root."""
        return f"docs/plugins/{self.name}.md"

    @property
    def base_name(self) -> str:
        return self.base.rpartition(":")[2]

    def base_class(self) -> type:
        module, _, qualname = self.base.partition(":")
        return getattr(importlib.import_module(module), qualname)


PLUGIN_KINDS: dict[str, PluginKind] = {k.name: k for k in (
    PluginKind("divergence", "arkd_register_divergences", "arkd_bench.divergences.base:Divergence", True),
    PluginKind("weighting", "arkd_register_weightings", "arkd_bench.weighting.base:WeightingStrategy", True),
    PluginKind("dataset", "arkd_register_datasets", "arkd_bench.data.base:DatasetSource", True),
    PluginKind("metric", "arkd_register_metrics", "arkd_bench.evaluate.base:Metric", True),
    PluginKind("reporter", "arkd_register_reporters", "arkd_bench.report.reporters:Reporter", True),
    PluginKind("data_policy", "arkd_register_data_policies", "arkd_bench.data_policy.base:DataPolicy", True),
)}

KINDS: tuple[str, ...] = tuple(PLUGIN_KINDS)

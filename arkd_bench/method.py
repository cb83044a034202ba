"""The one place a method's spec becomes objects: its objective's divergences, its weighting
strategy (told what each term's divergence is, and seeded by the cell), and its data policy.

Training, recipe validation and `arkd_bench.get_weighting` build through here, so a strategy
is made the same way wherever it is made. Nothing here imports torch; a plugin's own
set-up may.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arkd_bench.data_policy.base import DataPolicy
    from arkd_bench.divergences.base import Divergence
    from arkd_bench.plugins.manager import Plugins
    from arkd_bench.weighting.base import WeightingStrategy

# A method's spec is a recipe's MethodSpec (`objective`, `weighting`, `data`); it is not
# imported here, because the recipe's validation builds through this module.
MethodSpec = Any


@dataclass(frozen=True)
class Method:
    """A method's objects for one cell."""

    terms: dict[str, Divergence]  # objective label -> divergence, in recipe order
    strategy: WeightingStrategy
    data_policy: DataPolicy


def build_method(spec: MethodSpec, plugins: Plugins, seed: int | None, *,
                 data_policy: DataPolicy | None = None) -> Method:
    """Every object of `spec` for a cell trained with `seed` (None: the options as written,
    for a check outside any cell). `data_policy`: the one the grid already built for this
    method's training sequences, used instead of a new one."""
    terms = build_terms(spec, plugins)
    strategy = build_strategy(plugins, spec.weighting.name, spec.weighting.options, terms, seed)
    return Method(terms=terms, strategy=strategy,
                  data_policy=data_policy if data_policy is not None else build_data_policy(spec, plugins))


def build_terms(spec: MethodSpec, plugins: Plugins) -> dict[str, Divergence]:
    """The objective's divergences by label, in recipe order."""
    return {t.key: plugins.create("divergence", t.name, **t.options) for t in spec.objective}


def build_strategy(plugins: Plugins, name: str, options: dict[str, Any], terms: dict[str, Any] | Sequence[str],
                   seed: int | None = None, *, whole: bool = True) -> WeightingStrategy:
    """The weighting strategy `name` with the recipe's `options` for `terms` (label ->
    divergence; bare labels leave the terms' directions unknown). Without `whole`, a
    WeightingStrategy class is checked as its contract says (its Options and `check_terms`,
    run by the base `__init__`) without its own set-up, which may build networks with torch
    (ARKD's policy)."""
    from arkd_bench.weighting.base import WeightingStrategy

    # what each term's divergence declares it is (forward/reverse), so a strategy finds its
    # FKL and RKL terms by what they are, not by their labels or order
    directions = ([getattr(d, "direction", None) for d in terms.values()] if isinstance(terms, dict) else None)
    arguments = dict(terms=list(terms), directions=directions, **seeded_options(plugins, name, options, seed))
    factory = plugins.registry("weighting").get(name).factory
    if not whole and isinstance(factory, type) and issubclass(factory, WeightingStrategy):
        strategy = factory.__new__(factory)
        WeightingStrategy.__init__(strategy, **arguments)
        return strategy
    return factory(**arguments)


def seeded_options(plugins: Plugins, name: str, options: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """A strategy with a `seed` option (arkd's policy) gets the recipe's value (default 0) plus
    the cell's training seed, so training seeds vary the policy's draws too. Without a seed
    (a check outside any cell) the options are as written."""
    options = dict(options)
    if seed is None:
        return options
    model = plugins.registry("weighting").get(name).options_model
    if model is not None and "seed" in model.model_fields:
        options["seed"] = options.get("seed", 0) + seed
    return options


def build_data_policy(spec: MethodSpec, plugins: Plugins) -> DataPolicy:
    """Where the method's training sequences come from."""
    return plugins.create("data_policy", spec.data.name, **spec.data.options)


def standalone_strategy(plugins: Plugins, name: str, labels: Sequence[str], options: dict[str, Any]) -> WeightingStrategy:
    """The strategy `name` for the terms `labels`, outside any cell (`arkd_bench.get_weighting`):
    as a method with the objective `labels` builds it when every label is a divergence that
    builds with its default options; else (labels of your own) without term directions."""
    terms: dict[str, Any] | list[str] = list(labels)
    if len(set(labels)) == len(labels) and all(label in plugins.registry("divergence") for label in labels):
        try:
            terms = {label: plugins.create("divergence", label) for label in labels}
        except (ValueError, TypeError):  # a divergence with required options: the labels stay bare
            terms = list(labels)
    return build_strategy(plugins, name, options, terms)

"""arkd_bench.method: a method spec becomes the same objects wherever it is built (a cell,
recipe validation, `arkd_bench.get_weighting`)."""
import pytest

from arkd_bench.method import build_method, build_strategy, build_terms
from arkd_bench.recipe.schema import MethodSpec


def spec(**fields):
    return MethodSpec.model_validate({"name": "m", "objective": ["fkl", "rkl"], **fields})


def test_a_cell_seed_adds_to_the_strategy_seed_and_no_seed_keeps_the_options(builtin_plugins):
    method = spec(weighting={"name": "arkd", "options": {"seed": 5}})
    assert build_method(method, builtin_plugins, 3).strategy.options.seed == 8
    assert build_method(method, builtin_plugins, None).strategy.options.seed == 5
    assert build_method(spec(weighting="arkd"), builtin_plugins, 2).strategy.options.seed == 2
    # a strategy without a seed option is built with the options as written, whatever the cell
    assert build_method(spec(weighting="greedy"), builtin_plugins, 7).strategy.options.mu == 0.5


def test_terms_keep_recipe_order_and_tell_the_strategy_their_directions(builtin_plugins):
    method = spec(objective=[{"name": "rkl", "label": "back"}, "fkl"], weighting="greedy")
    built = build_method(method, builtin_plugins, 0)
    assert list(built.terms) == ["back", "fkl"]
    assert built.strategy.terms == ["back", "fkl"]
    assert built.strategy.directions == ["reverse", "forward"]
    assert built.data_policy.name == "ground_truth"


def test_a_policy_built_already_is_the_methods(builtin_plugins):
    policy = builtin_plugins.create("data_policy", "student", lmbda=0.5)
    built = build_method(spec(data={"name": "student", "options": {"lmbda": 0.5}}), builtin_plugins, 0,
                         data_policy=policy)
    assert built.data_policy is policy


def test_checking_a_strategy_runs_its_contract_without_its_set_up(builtin_plugins):
    method = spec(weighting="arkd")
    checked = build_strategy(builtin_plugins, "arkd", {}, build_terms(method, builtin_plugins), whole=False)
    assert checked.terms == ["fkl", "rkl"] and not hasattr(checked, "_gen")  # no policy network
    assert hasattr(build_method(method, builtin_plugins, None).strategy, "_gen")
    with pytest.raises(ValueError, match="exactly two objective terms"):
        build_strategy(builtin_plugins, "greedy", {}, {"fkl": builtin_plugins.create("divergence", "fkl")},
                       whole=False)


def test_get_weighting_builds_as_a_method_does():
    import arkd_bench

    assert arkd_bench.get_weighting("greedy", terms=["fkl", "rkl"]).directions == ["forward", "reverse"]
    assert arkd_bench.get_weighting("fixed", terms=["mine", "yours"]).directions is None

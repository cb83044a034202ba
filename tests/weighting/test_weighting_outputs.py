"""What a weighting returns is checked every step: shape [T] or [T, *token_shape], finite,
>= 0. A strategy that breaks it fails its cell with a PluginOutputError naming the strategy,
the file and line of its `weights`, the method and the step; `fixed` refuses such weights when
the recipe is validated."""
from __future__ import annotations

import inspect
import math
import types

import pytest
import torch
from pydantic import ValidationError

from arkd_bench import WeightingStrategy, hookimpl
from arkd_bench.plugins.output import PluginOutputError
from arkd_bench.testing import fake_features
from arkd_bench.weighting.base import check_weights
from arkd_bench.weighting.fixed import FixedOptions, FixedWeighting


class Returns(WeightingStrategy):
    """Whatever `weights` its class attribute `value` says (a callable of the features)."""

    name = "returns"
    value = staticmethod(lambda features: torch.tensor([0.5, 0.5]))

    def weights(self, features):
        return self.value(features)


def returning(value, name="returns"):
    return type(f"Returns_{name}", (Returns,), {"name": name, "value": staticmethod(value)})


WEIGHTS_LINE = f"{inspect.getsourcefile(Returns)}:{Returns.weights.__code__.co_firstlineno}"


def failure(strategy_cls, features=None):
    features = fake_features(step=7) if features is None else features
    strategy = strategy_cls(terms=["fkl", "rkl"])
    with pytest.raises(PluginOutputError) as info:
        check_weights(strategy, strategy.weights(features), features)
    return str(info.value)


def test_negative_weights_name_the_plugin_file_method_and_step():
    message = failure(returning(lambda f: torch.tensor([1.7, -0.7]), "mixer"))
    assert message.startswith(f"weighting plugin 'mixer' (Returns_mixer.weights in {WEIGHTS_LINE}) returned a bad "
                              "value from weights() at step 7: weight of term 'rkl' is negative: -0.7 "
                              "(weights [1.7, -0.7] for terms ['fkl', 'rkl'])")
    assert "maximise its divergence" in message and message.endswith("see docs/plugins/weighting.md")


def test_nan_and_inf_weights_are_refused_per_batch_and_per_token():
    assert "weight of term 'fkl' is nan" in failure(returning(lambda f: torch.tensor([math.nan, 1.0])))

    def inf_at_row_1_token_2(features):
        weights = torch.ones(2, *features.mask.shape)
        weights[1, 1, 2] = math.inf
        return weights

    assert "weight of term 'rkl' is inf at token (1, 2)" in failure(returning(inf_at_row_1_token_2))


def test_wrong_shapes_and_types_are_refused_before_any_value_is_read():
    assert "expected shape (2,) (one weight per term) or (2, 2, 5) (per term and token), got (3,)" in failure(
        returning(lambda f: torch.tensor([0.2, 0.3, 0.5])))
    assert "got (2, 5)" in failure(returning(lambda f: torch.ones(2, 5)))  # a token axis missing
    assert "expected a torch.Tensor of shape [2] or [2, 2, 5], got list" in failure(returning(lambda f: [0.5, 0.5]))
    assert "dtype torch.bool" in failure(returning(lambda f: torch.tensor([True, False])))


def test_what_the_contract_allows_passes():
    features = fake_features(masked=2)
    for weights in (torch.tensor([1.0, 0.0]), torch.zeros(2),  # all-zero: the batch is skipped, allowed
                    torch.ones(2, 2, 5, dtype=torch.float64), torch.tensor([1, 2]),
                    # negative where no token is scored multiplies nothing
                    torch.where(features.mask, 0.5, -1.0).expand(2, 2, 5)):
        assert check_weights(Returns(terms=["fkl", "rkl"]), weights, features) is weights


def test_builtins_keep_the_contract():
    features = fake_features(masked=1)
    for name, options in [("fixed", {}), ("fixed", {"weights": [0.0, 1.0]}), ("greedy", {}), ("arkd", {}),
                          ("schedule", {"start": [1, 0], "end": [0, 1]})]:
        from arkd_bench import get_weighting

        strategy = get_weighting(name, **options)
        check_weights(strategy, strategy.weights(features), features)


@pytest.mark.parametrize("weights, says", [
    ([1.7, -0.7], "a weight must be >= 0, got -0.7"),
    ([math.nan, 1.0], "a weight must be a finite number, got nan"),
    ([math.inf, 1.0], "a weight must be a finite number, got inf"),
    ([0.0, 0.0], "are all 0: no term would be trained"),
])
def test_fixed_refuses_weights_that_are_not_finite_and_non_negative(weights, says):
    with pytest.raises(ValidationError, match=says):
        FixedOptions(weights=weights)
    with pytest.raises(ValidationError, match=says):
        FixedWeighting(terms=["fkl", "rkl"], weights=weights)
    assert FixedWeighting(terms=["fkl", "rkl"], weights=[0.0, 2.0]).options.weights == [0.0, 2.0]


# -- in the training loop, on real tiny models -------------------------------------------------


def distill(tokenizer, strategy_cls, steps=2):
    from accelerate import Accelerator

    from arkd_bench.data.base import Example
    from arkd_bench.data.collate import TrainingDataset
    from arkd_bench.plugins import load_plugins
    from arkd_bench.recipe.schema import MethodSpec, TrainSpec
    from arkd_bench.testing import SAMPLE_TEXTS, tiny_gpt2
    from arkd_bench.teacher.base import OnlineTeacher
    from arkd_bench.train.distill import Distiller

    module = types.ModuleType("weights_plugin")
    module.arkd_register_weightings = hookimpl(lambda register: register(strategy_cls))
    plugins = load_plugins(autoload=False, extra=[("weights_plugin", module)])
    method = MethodSpec.model_validate({"name": "m", "objective": ["fkl", "rkl"],
                                        "weighting": {"name": strategy_cls.name}})
    spec = TrainSpec.model_validate({"steps": steps, "batch_size": 4, "max_length": 64, "log_every": 1})
    examples = [Example(prompt=f"Item {i}:", references=(SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)],)) for i in range(8)]
    items = TrainingDataset(examples, tokenizer, 64).items
    return Distiller(student=tiny_gpt2(tokenizer, seed=1), teacher=OnlineTeacher(tiny_gpt2(tokenizer, seed=2)),
                     tokenizer=tokenizer,
                     train_items=items, method=method, train=spec, plugins=plugins, seed=0,
                     accelerator=Accelerator(cpu=True)).run()


def at_step(step, value):
    """`value` from step `step` on, valid weights before."""
    return lambda f: value(f) if f.step >= step else torch.tensor([0.5, 0.5])


@pytest.mark.parametrize("value, says", [
    (lambda f: torch.tensor([1.7, -0.7]), "weight of term 'rkl' is negative: -0.7"),
    (lambda f: torch.full((2, *f.mask.shape), math.nan), "weight of term 'fkl' is nan at token (0, 0)"),
    (lambda f: torch.tensor([0.2, 0.3, 0.5]), "got (3,), for 2 objective terms"),
])
def test_the_loop_fails_with_the_plugins_name_file_method_and_step(tokenizer, value, says):
    with pytest.raises(PluginOutputError) as info:
        distill(tokenizer, returning(at_step(1, value), "bad_mix"))
    message = str(info.value)
    assert message.startswith(f"weighting plugin 'bad_mix' (Returns_bad_mix.weights in {WEIGHTS_LINE}) "
                              "returned a bad value from weights() at step 1: "), message
    assert says in message


def test_the_loop_trains_with_all_zero_weights(tokenizer):
    outcome = distill(tokenizer, returning(lambda f: torch.zeros(2), "skip_all"))
    assert [r["loss"] for r in outcome.log] == [0.0, 0.0]

import pytest
from pydantic import BaseModel

from arkd_bench.evaluate.base import Metric
from arkd_bench.plugins.kinds import PLUGIN_KINDS
from arkd_bench.plugins.registry import Registry, RegistryError
from arkd_bench.weighting.base import WeightingStrategy


class Thing(Metric):
    name = "thing"

    class Options(BaseModel):
        size: int = 3


class Mix(WeightingStrategy):
    name = "mix"


def test_duplicate_name_names_both_plugins():
    registry = Registry("metric")
    registry.register(Thing, origin="first_plugin")
    with pytest.raises(RegistryError) as exc:
        registry.register(Thing, origin="second_plugin")
    assert "first_plugin" in str(exc.value) and "second_plugin" in str(exc.value)


def test_unknown_name_suggests_close_match_and_lists_all():
    registry = Registry("weighting")
    registry.register(Mix, origin="p", name="greedy")
    registry.register(Mix, origin="p", name="fixed")
    with pytest.raises(RegistryError) as exc:
        registry.get("gredy")
    message = str(exc.value)
    assert "did you mean 'greedy'" in message
    assert "valid: fixed, greedy" in message


def test_entry_remembers_origin_and_options():
    registry = Registry("metric")
    registry.register(Thing, origin="my_plugin")
    entry = registry.get("thing")
    assert entry.origin == "my_plugin"
    assert entry.options_schema()["size"]["default"] == 3
    assert registry.create("thing").__class__ is Thing


def test_unnamed_factory_is_an_error():
    class Nameless(Metric):
        pass

    with pytest.raises(RegistryError, match="without a name"):
        Registry("metric").register(Nameless, origin="p")


def test_a_class_of_another_kind_is_refused_with_the_plugin_and_the_right_hook():
    with pytest.raises(RegistryError) as exc:
        Registry("weighting").register(Thing, origin="my_metrics.py")
    message = str(exc.value)
    assert "plugin 'my_metrics.py'" in message and "subclass of WeightingStrategy" in message
    assert "it is a Metric: register it from `arkd_register_metrics`" in message
    assert "docs/plugins/weighting.md" in message


def test_a_function_is_not_a_plugin_class():
    def make_weights(terms):
        return None

    with pytest.raises(RegistryError, match="plugin 'p' registered .*make_weights"):
        Registry("weighting").register(make_weights, origin="p", name="mine")


@pytest.mark.parametrize("kind", list(PLUGIN_KINDS))
def test_every_kind_names_an_importable_base_class(kind):
    base = PLUGIN_KINDS[kind].base_class()
    assert isinstance(base, type) and base.__name__ == PLUGIN_KINDS[kind].base_name

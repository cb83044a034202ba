import pytest
from pydantic import BaseModel

from arkd_bench.registry import Registry, RegistryError


class Thing:
    name = "thing"

    class Options(BaseModel):
        size: int = 3


def test_duplicate_name_names_both_plugins():
    registry = Registry("metric")
    registry.register(Thing, origin="first_plugin")
    with pytest.raises(RegistryError) as exc:
        registry.register(Thing, origin="second_plugin")
    assert "first_plugin" in str(exc.value) and "second_plugin" in str(exc.value)


def test_unknown_name_suggests_close_match_and_lists_all():
    registry = Registry("weighting")
    registry.register(Thing, origin="p", name="greedy")
    registry.register(Thing, origin="p", name="fixed")
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
    class Nameless:
        pass

    with pytest.raises(RegistryError, match="without a name"):
        Registry("metric").register(Nameless, origin="p")

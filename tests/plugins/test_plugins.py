import textwrap

import pytest

from arkd_bench import WeightingStrategy, hookimpl
from arkd_bench.plugins import PluginLoadError, load_plugins
from arkd_bench.plugins.registry import RegistryError

WEIGHTING_PLUGIN = """
from arkd_bench import WeightingStrategy, hookimpl

class Half(WeightingStrategy):
    name = "{name}"

    def weights(self, features):
        import torch
        return torch.full((len(self.terms),), 0.5)

@hookimpl
def arkd_register_weightings(register):
    register(Half)
"""


def write_plugin(tmp_path, filename, name="half"):
    path = tmp_path / filename
    path.write_text(textwrap.dedent(WEIGHTING_PLUGIN.format(name=name)))
    return path


def test_builtins_are_registered_with_their_origin(builtin_plugins):
    kinds = {(e.kind, e.name): e.origin for e in builtin_plugins.entries()}
    assert kinds[("divergence", "fkl")] == "divergences"
    assert kinds[("divergence", "rkl")] == "divergences"
    assert kinds[("weighting", "fixed")] == "weightings"
    assert kinds[("metric", "rougeL")] == "metrics"
    assert kinds[("reporter", "md")] == "reporters"
    assert ("dataset", "jsonl") in kinds


def test_plugin_file_registers_a_weighting(tmp_path):
    path = write_plugin(tmp_path, "half.py")
    plugins = load_plugins([path], autoload=False)
    entry = plugins.registry("weighting").get("half")
    assert entry.origin == "half.py"
    assert plugins.create("weighting", "half", terms=["fkl", "rkl"]).weights(None).tolist() == [0.5, 0.5]


def test_plugins_dir_loads_every_file(tmp_path):
    write_plugin(tmp_path, "a.py", name="a_weights")
    write_plugin(tmp_path, "b.py", name="b_weights")
    plugins = load_plugins(plugins_dirs=[tmp_path], autoload=False)
    assert {"a_weights", "b_weights"} <= set(plugins.registry("weighting").names())


def test_duplicate_name_across_plugins_is_an_error(tmp_path):
    path = write_plugin(tmp_path, "clash.py", name="fixed")
    with pytest.raises(RegistryError) as exc:
        load_plugins([path], autoload=False)
    assert "weighting 'fixed' is registered by both" in str(exc.value)
    assert "'weightings'" in str(exc.value) and "'clash.py'" in str(exc.value)


def test_broken_plugin_is_reported_and_skipped(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_real_module_anywhere\n")
    plugins = load_plugins([broken], autoload=False)
    assert [f.name for f in plugins.failures] == ["broken.py"]
    assert "not_a_real_module_anywhere" in str(plugins.failures[0])
    assert "fixed" in plugins.registry("weighting")


def test_broken_plugin_is_fatal_in_strict_mode(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginLoadError, match="boom"):
        load_plugins([broken], autoload=False, strict=True)


def test_hookimpl_with_a_misspelt_hook_is_rejected(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text("from arkd_bench import hookimpl\n\n@hookimpl\ndef arkd_register_weighting(register):\n    pass\n")
    with pytest.raises(Exception, match="arkd_register_weighting"):
        load_plugins([path], autoload=False, strict=True)


def test_env_switch_disables_entry_points(monkeypatch):
    monkeypatch.setenv("ARKD_BENCH_NO_AUTOLOAD", "1")
    plugins = load_plugins()
    assert "confidence" not in plugins.registry("weighting")


class Early(WeightingStrategy):
    name = "early"


class Late(WeightingStrategy):
    name = "late"


class Wrapped(WeightingStrategy):
    name = "wrapped"


class Recorder:
    """A plugin object that notes each of its hook calls in a shared list."""

    def __init__(self, calls):
        self.calls = calls


class OrderedPlugin(Recorder):
    """Hooks with tryfirst, trylast and no arguments at all: pluggy's rules, not ours."""

    @hookimpl(tryfirst=True)
    def arkd_register_weightings(self, register):
        self.calls.append("tryfirst")
        register(Early)

    @hookimpl(trylast=True)
    def arkd_register_metrics(self):  # opts out of `register`: still called
        self.calls.append("metrics without arguments")


class LatePlugin(Recorder):
    @hookimpl(trylast=True)
    def arkd_register_weightings(self, register):
        self.calls.append("trylast")
        register(Late)


class WrapperPlugin(Recorder):
    @hookimpl(wrapper=True)
    def arkd_register_weightings(self, register):
        self.calls.append("wrapper before")
        result = yield
        self.calls.append("wrapper after")
        register(Wrapped)  # after every other implementation has registered
        return result


def test_hooks_follow_pluggy_ordering_wrappers_and_opt_in_arguments():
    calls = []
    # Registered wrapper first and tryfirst last: pluggy's order must win over registration order.
    plugins = load_plugins(autoload=False, extra=[("wrapper-plugin", WrapperPlugin(calls)),
                                                  ("late-plugin", LatePlugin(calls)),
                                                  ("first-plugin", OrderedPlugin(calls))])
    assert calls == ["wrapper before", "tryfirst", "trylast", "wrapper after", "metrics without arguments"]
    origins = {e.name: e.origin for e in plugins.registry("weighting").entries()}
    assert origins["early"] == "first-plugin" and origins["late"] == "late-plugin"
    assert origins["wrapped"] == "wrapper-plugin" and origins["greedy"] == "weightings"


def test_a_wrong_kind_registration_names_the_plugin_file(tmp_path):
    path = tmp_path / "mixed_up.py"
    path.write_text(textwrap.dedent("""
        from arkd_bench import Metric, hookimpl

        class Exact(Metric):
            name = "exact"

        @hookimpl
        def arkd_register_weightings(register):
            register(Exact)
    """))
    with pytest.raises(RegistryError) as exc:
        load_plugins([path], autoload=False)
    assert "plugin 'mixed_up.py' registered Exact" in str(exc.value)
    assert "register it from `arkd_register_metrics`" in str(exc.value)


def test_register_kept_after_the_hook_returned_is_refused():
    kept = []

    class Keeper:
        @hookimpl
        def arkd_register_weightings(self, register):
            kept.append(register)

    load_plugins(autoload=False, extra=[("keeper", Keeper())])
    with pytest.raises(RegistryError, match="after its hook returned"):
        kept[0](Early)


def test_every_kind_in_the_table_has_exactly_one_hookspec():
    from arkd_bench.plugins import hookspecs
    from arkd_bench.plugins.kinds import PLUGIN_KINDS

    specs = {name for name in vars(hookspecs) if name.startswith("arkd_")}
    assert specs == {kind.hook for kind in PLUGIN_KINDS.values()}


def test_loading_every_plugin_imports_no_torch():
    """`arkd-bench plugins` and recipe validation register every class without torch (it
    takes seconds to import): tensor code runs only when something is computed."""
    import subprocess
    import sys

    code = ("import sys; from arkd_bench.plugins import load_plugins; plugins = load_plugins(); "
            "assert 'fkl' in plugins.registry('divergence'); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout

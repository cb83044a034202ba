"""The README documents the public hooks and interfaces; these tests fail when they drift."""
import inspect
import re
from pathlib import Path

from arkd_bench import hookspecs

README = (Path(__file__).parent.parent / "README.md").read_text()


def hook_functions():
    return {name: fn for name, fn in vars(hookspecs).items() if name.startswith("arkd_") and callable(fn)}


def test_every_hook_is_documented_with_its_signature_and_docstring():
    table = README.split("<!-- hooks:start -->")[1].split("<!-- hooks:end -->")[0]
    documented = dict(re.findall(r"\| `(arkd_\w+\(.*?\))` \| (.+?) \|", table))
    expected = {}
    for name, fn in hook_functions().items():
        signature = f"{name}({', '.join(inspect.signature(fn).parameters)})"
        expected[signature] = inspect.getdoc(fn).removeprefix("Register ").rstrip(".")
    assert {sig: doc.rstrip(".") for sig, doc in documented.items()} == expected


def test_hooks_take_only_register():
    for name, fn in hook_functions().items():
        assert list(inspect.signature(fn).parameters) == ["register"], name


def test_documented_strategy_methods_exist():
    from arkd_bench.weighting import WeightingStrategy

    for method in ("weights", "observe", "log_scalars", "state_dict", "load_state_dict"):
        assert f"{method}(" in README and callable(getattr(WeightingStrategy, method))
    assert "feedback_requests" in README and hasattr(WeightingStrategy, "feedback_requests")

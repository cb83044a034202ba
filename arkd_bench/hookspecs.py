"""Hook specifications. Each hook receives a `register` callback.

Call `register(factory)` once per thing the plugin provides; `factory` is a class with
a `name` class attribute and an optional pydantic `Options` model, or pass
`register(factory, name="other")` to register it under another name.
"""
from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("arkd_bench")
hookimpl = HookimplMarker("arkd_bench")


@hookspec
def arkd_register_divergences(register):
    """Register Divergence classes (token-level teacher/student divergences)."""


@hookspec
def arkd_register_weightings(register):
    """Register WeightingStrategy classes (how objective terms are mixed)."""


@hookspec
def arkd_register_datasets(register):
    """Register DatasetSource classes (where prompts and references come from)."""


@hookspec
def arkd_register_metrics(register):
    """Register Metric classes (scores of generated text, or of the models themselves)."""


@hookspec
def arkd_register_reporters(register):
    """Register Reporter classes (leaderboard formats written from run results)."""

"""Hook specifications. Each hook receives a `register` callback.

Call `register(cls)` once per class the plugin provides: a subclass of the kind's base
class (see `arkd_bench.plugins.kinds`) with a `name` class attribute and an optional pydantic
`Options` model; `register(cls, name="other")` registers it under another name. Hooks are
called through pluggy, so `@hookimpl(tryfirst=True)`, `trylast` and `wrapper=True` work,
and an implementation may leave out arguments it does not use.
"""
from collections.abc import Callable

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("arkd_bench")
hookimpl = HookimplMarker("arkd_bench")

Register = Callable[..., None]  # register(cls, name: str | None = None)


@hookspec
def arkd_register_divergences(register: Register) -> None:
    """Register Divergence classes (token-level teacher/student divergences)."""


@hookspec
def arkd_register_weightings(register: Register) -> None:
    """Register WeightingStrategy classes (how objective terms are mixed)."""


@hookspec
def arkd_register_datasets(register: Register) -> None:
    """Register DatasetSource classes (where prompts and references come from)."""


@hookspec
def arkd_register_metrics(register: Register) -> None:
    """Register Metric classes (scores of generated text, or of the models themselves)."""


@hookspec
def arkd_register_reporters(register: Register) -> None:
    """Register Reporter classes (leaderboard formats written from run results)."""


@hookspec
def arkd_register_data_policies(register: Register) -> None:
    """Register DataPolicy classes (where the training sequences come from)."""

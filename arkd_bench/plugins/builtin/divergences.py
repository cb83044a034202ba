"""Builtin divergences, registered through the same hook a third-party plugin uses."""
from arkd_bench.plugins.hookspecs import hookimpl


@hookimpl
def arkd_register_divergences(register):
    from arkd_bench.divergences import BUILTIN_DIVERGENCES as BUILTINS

    for factory in BUILTINS.values():
        register(factory)

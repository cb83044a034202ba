"""Builtin weightings, registered through the same hook a third-party plugin uses."""
from arkd_bench.plugins.hookspecs import hookimpl


@hookimpl
def arkd_register_weightings(register):
    from arkd_bench.weighting import BUILTIN_WEIGHTINGS as BUILTINS

    for factory in BUILTINS.values():
        register(factory)

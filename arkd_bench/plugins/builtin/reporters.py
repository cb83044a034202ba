"""Builtin reporters, registered through the same hook a third-party plugin uses."""
from arkd_bench.plugins.hookspecs import hookimpl


@hookimpl
def arkd_register_reporters(register):
    from arkd_bench.report import BUILTIN_REPORTERS as BUILTINS

    for factory in BUILTINS.values():
        register(factory)

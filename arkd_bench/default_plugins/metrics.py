"""Builtin metrics, registered through the same hook a third-party plugin uses."""
from arkd_bench.hookspecs import hookimpl


@hookimpl
def arkd_register_metrics(register):
    from arkd_bench.evaluate import BUILTIN_METRICS as BUILTINS

    for factory in BUILTINS.values():
        register(factory)

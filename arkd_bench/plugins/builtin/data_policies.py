"""Builtin data policies, registered through the same hook a third-party plugin uses."""
from arkd_bench.plugins.hookspecs import hookimpl


@hookimpl
def arkd_register_data_policies(register):
    from arkd_bench.data_policy import BUILTIN_DATA_POLICIES as BUILTINS

    for factory in BUILTINS.values():
        register(factory)

"""Builtin datasets, registered through the same hook a third-party plugin uses."""
from arkd_bench.plugins.hookspecs import hookimpl


@hookimpl
def arkd_register_datasets(register):
    from arkd_bench.data import BUILTIN_DATASETS as BUILTINS

    for factory in BUILTINS.values():
        register(factory)

"""Builtin metrics, registered through the same hook a third-party plugin uses."""
from arkd_bench.plugins.hookspecs import hookimpl


@hookimpl
def arkd_register_metrics(register):
    from arkd_bench.evaluate import BUILTIN_METRICS as BUILTINS
    from arkd_bench.evaluate.lm_eval_metric import LmEval

    for factory in BUILTINS.values():
        register(factory)
    # Always listed; its options check (run by `validate`) says how to install lm-eval when it is missing.
    register(LmEval)

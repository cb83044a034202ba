"""The `arkd-bench` command line: one module per command."""
from __future__ import annotations

import os

import typer

from arkd_bench.cli import (check_cmd, export_cmd, new_plugin_cmd, plugins_cmd, report_cmd, run_cmd, schema_cmd,
                            select_cmd, validate_cmd)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Distil language models with many objectives and weightings; compare them fairly.")
app.command("run")(run_cmd.run)
app.command("select")(select_cmd.select)
app.command("validate")(validate_cmd.validate)
app.command("plugins")(plugins_cmd.plugins)
app.command("report")(report_cmd.report)
app.command("check")(check_cmd.check)
app.command("export")(export_cmd.export)
app.command("new-plugin")(new_plugin_cmd.new_plugin)
app.command("schema")(schema_cmd.schema)


def main() -> None:
    # Before torch starts OpenMP: idle threads sleep rather than spin, which on a busy or
    # shared CPU made the divergence pass 10-100x slower. An explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()

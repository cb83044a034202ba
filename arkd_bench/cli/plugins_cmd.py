from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from arkd_bench.cli.common import err, out

FORMATS = ("table", "text", "json")


def option_text(name: str, option: dict[str, Any]) -> str:
    text = f"{name}: {option['type']}"
    return text + (" (required)" if option["required"] else f" = {option['default']!r}")


def default_format() -> str:
    return "table" if sys.stdout.isatty() else "text"


def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list (same as --format json)")] = False,
    format: Annotated[str | None, typer.Option(
        "--format", help="table, text (one line per name, nothing cut) or json; "
                         "default: table on a terminal, else text")] = None,
    plugins_dir: Annotated[list[Path] | None, typer.Option("--plugins-dir", help="folder of plugin .py files")] = None,
) -> None:
    """List every registered divergence, weighting, dataset, metric and reporter."""
    from arkd_bench.plugins import load_plugins

    format = "json" if as_json else format or default_format()
    if format not in FORMATS:
        err.print(f"error: --format {format!r}: valid: {', '.join(FORMATS)}", markup=False)
        raise typer.Exit(1)
    loaded = load_plugins(plugins_dirs=plugins_dir or [])
    entries = [{"name": e.name, "kind": e.kind, "origin": e.origin, "description": e.doc,
                "options": e.options_schema()} for e in loaded.entries()]
    for failure in loaded.failures:
        err.print(f"warning: {failure}", markup=False)
    if format == "json":
        print(json.dumps(entries, indent=2, default=str))
    elif format == "text":
        for e in entries:
            options = "; ".join(option_text(k, v) for k, v in e["options"].items()) or "no options"
            print(" ".join(f"{e['kind']} {e['name']} ({e['origin']}): {e['description']} [{options}]".split()))
    else:
        from rich.table import Table

        table = Table("kind", "name", "origin", "options", "description")
        for column in table.columns:
            column.overflow = "fold"  # wrap long names and option lists; never cut them off
        for e in entries:
            table.add_row(e["kind"], e["name"], e["origin"],
                          "\n".join(option_text(k, v) for k, v in e["options"].items()), e["description"])
        out.print(table)

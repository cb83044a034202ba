from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import err, out


def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
    plugins_dir: Annotated[list[Path] | None, typer.Option("--plugins-dir", help="folder of plugin .py files")] = None,
) -> None:
    """List every registered divergence, weighting, dataset, metric and reporter."""
    from rich.table import Table

    from arkd_bench.plugins import load_plugins

    loaded = load_plugins(plugins_dirs=plugins_dir or [])
    entries = [{"name": e.name, "kind": e.kind, "origin": e.origin, "description": e.doc,
                "options": e.options_schema()} for e in loaded.entries()]
    for failure in loaded.failures:
        err.print(f"warning: {failure}", markup=False)
    if as_json:
        print(json.dumps(entries, indent=2, default=str))
        return
    table = Table("kind", "name", "origin", "options", "description")
    for e in entries:
        options = ", ".join(f"{k}={v['default']!r}" if not v["required"] else f"{k} (required)"
                            for k, v in e["options"].items())
        table.add_row(e["kind"], e["name"], e["origin"], options, e["description"])
    out.print(table)

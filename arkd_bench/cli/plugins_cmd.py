from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from arkd_bench.cli.common import err, fail, out, usage_error

FORMATS = ("table", "text", "json")


def option_text(name: str, option: dict[str, Any]) -> str:
    text = f"{name}: {option['type']}"
    return text + (" (required)" if option["required"] else f" = {option['default']!r}")


def load_plugins_or_exit(plugins_dirs: list[Path]):
    """Every plugin (builtins, entry points, the files of `plugins_dirs`), or one line and exit:
    2 for a `--plugins-dir` that is no folder of plugin files, 1 for a bad plugin."""
    from arkd_bench.plugins import PluginLoadError, PluginsDirError, load_plugins
    from arkd_bench.plugins.registry import RegistryError

    try:
        return load_plugins(plugins_dirs=plugins_dirs)
    except PluginsDirError as exc:
        usage_error(str(exc))
    except (PluginLoadError, RegistryError) as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - whatever a plugin trips, the user gets one line
        fail(f"the plugins could not be loaded: {type(exc).__name__}: {exc}")


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
    format = "json" if as_json else format or default_format()
    if format not in FORMATS:
        usage_error(f"--format {format!r}: valid: {', '.join(FORMATS)}")
    loaded = load_plugins_or_exit(plugins_dir or [])
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
        out.print(plugins_table(entries))


def plugins_table(entries: list[dict[str, Any]]):
    """The rich table: each option on its own line, its description under it (dimmed).
    Plugin text goes in as Text, never as markup: a docstring's brackets print as written."""
    from rich.table import Table
    from rich.text import Text

    table = Table("kind", "name", "origin", "options", "description")
    for column in table.columns:
        column.overflow = "fold"  # wrap long names and option lists; never cut them off
    for e in entries:
        options = Text()
        for name, option in e["options"].items():
            if options:
                options.append("\n")
            options.append(option_text(name, option))
            if option["description"]:
                options.append("\n  " + " ".join(option["description"].split()), style="dim")
        table.add_row(Text(e["kind"]), Text(e["name"]), Text(e["origin"]), options, Text(e["description"]))
    return table

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from arkd_bench.cli.common import err, out

FORMATS = ("table", "text", "json")


def type_text(annotation: Any) -> str:
    """A field's full type as written in Python: `Literal['a', 'b'] | None`, `list[float]`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else type_text(a) for a in args)}]" if args else name
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def choices(annotation: Any) -> list | None:
    """The values a Literal field (also inside `| None`) accepts, else None."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return list(args)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        found = [c for a in args if (c := choices(a)) is not None]
        return [v for c in found for v in c] if found else None
    return None


def options_of(entry) -> dict[str, dict[str, Any]]:
    """Option name -> {type, choices, default, required, description} from the plugin's Options model."""
    model = entry.options_model
    if model is None:
        return {}
    found = {}
    for name, field in model.model_fields.items():
        required = field.is_required()
        found[name] = {"type": type_text(field.annotation), "choices": choices(field.annotation),
                       "default": None if required else field.get_default(call_default_factory=True),
                       "required": required, "description": field.description or ""}
    return found


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
                "options": options_of(e)} for e in loaded.entries()]
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

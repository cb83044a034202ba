"""Rewrite the field tables in docs/plugins/*.md from the dataclasses they describe.

A table sits between `<!-- fields: module:Class -->` and `<!-- /fields -->`. Its field
names and types come from the code; the descriptions are kept from the table, by field
name. `python scripts/doc_tables.py` rewrites the files; tests/docs/test_docs.py fails when a
file differs from what this script would write, or a field has no description.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins"
TABLE = re.compile(r"(<!-- fields: (?P<target>[\w.]+:\w+) -->\n)(?P<body>.*?)(<!-- /fields -->)", re.S)
ROW = re.compile(r"^\| `(?P<name>\w+)` \| `[^`]*` \| (?P<doc>.*) \|$")


def field_rows(target: str, descriptions: dict[str, str]) -> list[str]:
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    rows = ["| field | type | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        kind = kind.replace("|", "\\|")  # a bare | would split the markdown cell
        rows.append(f"| `{f.name}` | `{kind}` | {descriptions.get(f.name, '')} |")
    return rows


def render(text: str) -> str:
    def table(match: re.Match) -> str:
        descriptions = {m["name"]: m["doc"].strip() for line in match["body"].splitlines()
                        if (m := ROW.match(line))}
        body = "\n".join(field_rows(match["target"], descriptions)) + "\n"
        return match.group(1) + body + match.group(4)

    return TABLE.sub(table, text)


def missing_descriptions(text: str) -> list[str]:
    return [f"{m['target']}.{row['name']}" for m in TABLE.finditer(text) for line in m["body"].splitlines()
            if (row := ROW.match(line)) and not row["doc"].strip()]


def main() -> int:
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path}")
        for name in missing_descriptions(new):
            print(f"{path}: describe {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

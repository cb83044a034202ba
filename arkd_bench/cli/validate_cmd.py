from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import load_or_exit, out


def validate(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file")],
    plugins_dir: Annotated[list[Path] | None, typer.Option("--plugins-dir", help="folder of plugin .py files")] = None,
) -> None:
    """Check a recipe (schema, plugin names and options) without running anything."""
    from arkd_bench.recipe.matrix import expand

    loaded = load_or_exit(recipe, plugins_dir)
    cells = expand(loaded.recipe)
    out.print(f"{recipe}: valid ({len(cells)} cells)")

"""What several commands share: loading a recipe with readable errors."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from arkd_bench.recipe.loader import RecipeError

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", markup=True)
    raise typer.Exit(1)


def load_or_exit(recipe: Path, plugins_dir: list[Path] | None = None):
    """The validated recipe, or the problems as `file:line: field: message` and exit 1."""
    from arkd_bench.recipe.validate import load_recipe

    try:
        loaded = load_recipe(recipe, plugins_dirs=plugins_dir or [])
    except RecipeError as exc:
        for line in exc.format().splitlines():
            err.print(line, markup=False)
        raise typer.Exit(1) from None
    for failure in loaded.plugins.failures:
        err.print(f"warning: {failure}", markup=False)
    return loaded

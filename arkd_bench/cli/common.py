"""What several commands share: loading a recipe with readable errors."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from arkd_bench.recipe.loader import RecipeError

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


# Exit codes: 1 = the recipe (or a file it names, or a check) is wrong; 2 = the command line is.
BAD_INPUT, BAD_USAGE = 1, 2


def fail(message: str) -> None:
    err.print("[red]error:[/red] ", end="", markup=True)
    err.print(message, markup=False)
    raise typer.Exit(BAD_INPUT)


def usage_error(message: str) -> None:
    """A wrong option value: exit 2, as click does for unknown options and missing arguments."""
    err.print("[red]usage error:[/red] ", end="", markup=True)
    err.print(message, markup=False)
    raise typer.Exit(BAD_USAGE)


def bad_choice(flag: str, value: str, choices) -> None:
    """Exit 2 for a flag value outside a fixed list: the valid ones, and the closest."""
    import difflib

    close = difflib.get_close_matches(value, list(choices), n=1)
    usage_error(f"{flag} {value!r}: {f'did you mean {close[0]!r}? ' if close else ''}valid: {', '.join(choices)}")


def recipe_error_exit(exc: RecipeError) -> None:
    """Print each problem as `file:line: field: message` (no traceback) and exit 1."""
    for line in exc.format().splitlines():
        err.print(line, markup=False)
    raise typer.Exit(BAD_INPUT) from None


def load_or_exit(recipe: Path, plugins_dir: list[Path] | None = None):
    """The validated recipe, or the problems as `file:line: field: message` and exit 1."""
    from arkd_bench.recipe.validate import load_recipe

    try:
        loaded = load_recipe(recipe, plugins_dirs=plugins_dir or [])
    except RecipeError as exc:
        recipe_error_exit(exc)
    except RecursionError:
        fail(f"{recipe}: the recipe is nested too deeply to check")
    except Exception as exc:  # noqa: BLE001 - whatever a bad recipe trips, the user gets one line
        fail(f"{recipe}: the recipe could not be checked: {type(exc).__name__}: {exc}")
    for failure in loaded.plugins.failures:
        err.print(f"warning: {failure}", markup=False)
    return loaded

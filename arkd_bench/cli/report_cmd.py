from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import fail

SUFFIX_FORMATS = {".md": "md", ".json": "json", ".csv": "csv", ".html": "html", ".htm": "html"}


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run folders (shards are merged)")],
    format: Annotated[str | None, typer.Option(
        "--format", "-f", help="a registered reporter: md, json, csv, html, ...; default from -o's suffix, else md")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
    reference: Annotated[str | None, typer.Option(help="method to compare with; default the recipe's")] = None,
    plugins_dir: Annotated[list[Path] | None, typer.Option(
        "--plugins-dir", help="folder of plugin .py files (the runs' recipe `plugins:` are loaded anyway)")] = None,
    adjust: Annotated[str, typer.Option(
        "--adjust", help="how stars account for the number of comparisons in each table: holm (default), "
                         "bonferroni or none; the table says which and how many")] = "holm",
) -> None:
    """Render the leaderboard of run folders, merged (shards of one grid, several recipes)."""
    from arkd_bench.cli.check_cmd import check_run_dirs
    from arkd_bench.cli.run_plugins import run_plugins_or_exit
    from arkd_bench.registry import RegistryError
    from arkd_bench.report.rows import load

    from arkd_bench.evaluate.stats import ADJUSTMENTS

    check_run_dirs(run_dirs)
    if adjust not in ADJUSTMENTS:
        fail(f"--adjust {adjust!r}: valid: {', '.join(ADJUSTMENTS)}")
    if format is None:
        format = SUFFIX_FORMATS.get(output.suffix.lower(), "md") if output is not None else "md"
    plugins = run_plugins_or_exit(run_dirs, plugins_dir)
    try:
        reporter = plugins.create("reporter", format)
    except RegistryError as exc:
        fail(f"--format: {exc}")
    text = reporter.render(load(run_dirs, plugins, reference=reference, adjust=adjust).results)
    if output is None:
        print(text, end="")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")

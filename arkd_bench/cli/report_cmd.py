from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import fail, usage_error

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
    metrics: Annotated[str | None, typer.Option(
        "--metrics", help="comma-separated metrics to show, in this order (md, html, latex); default: all")] = None,
    columns: Annotated[str | None, typer.Option(
        "--columns", help="comma-separated columns, in this order (md, html, latex): rank, method, teacher, "
                          "student, seeds, mean, delta (mean and delta: one per metric)")] = None,
    digits: Annotated[int | None, typer.Option(
        "--digits", help="decimals of every number (md, html, latex); default: two significant digits of "
                         "each 95% interval's half-width")] = None,
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
    results = load(run_dirs, plugins, reference=reference, adjust=adjust).results
    reporter = with_table_view(format, reporter, plugins.registry("reporter"), results, metrics, columns, digits)
    text = reporter.render(results)
    if output is None:
        print(text, end="")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def with_table_view(name: str, reporter, reporters, results, metrics: str | None, columns: str | None,
                    digits: int | None):
    """The reporter made with the table options given, each checked against the results
    (exit 2 naming an unknown metric or column, with a "did you mean"); as it was when none is."""
    from pydantic import ValidationError

    from arkd_bench.report.table import View, view_problems

    given = {k: v for k, v in (("metrics", _names(metrics)), ("columns", _names(columns)), ("digits", digits))
             if v is not None}
    if not given:
        return reporter
    problems = view_problems(results, View(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}))
    if problems:
        usage_error("; ".join(problems))
    try:
        return reporters.get(name).factory(**given)
    except (ValidationError, TypeError):
        usage_error(f"{', '.join('--' + k for k in given)}: the {name!r} reporter takes no table options "
                    "(md, html and latex do)")

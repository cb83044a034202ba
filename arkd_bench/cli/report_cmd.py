from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import bad_choice, usage_error

# Output suffix -> reporter; a plugin reporter's own `suffix` counts too (these win a clash).
SUFFIX_FORMATS = {".md": "md", ".json": "json", ".csv": "csv", ".html": "html", ".htm": "html", ".tex": "latex"}


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run folders (shards are merged)")],
    format: Annotated[str | None, typer.Option(
        "--format", "-f", help="a registered reporter: md, json, csv, html, ...; default from -o's suffix, else md")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
    reference: Annotated[str | None, typer.Option(help="method to compare with; default the recipe's")] = None,
    plugins_dir: Annotated[list[Path] | None, typer.Option(
        "--plugins-dir", help="folder of plugin .py files: more plugins, or files a run folder lacks "
                              "(each run's own plugin files are loaded from its copies anyway)")] = None,
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
    from arkd_bench.evaluate.stats import ADJUSTMENTS
    from arkd_bench.report.rows import load

    check_run_dirs(run_dirs)
    if adjust not in ADJUSTMENTS:
        bad_choice("--adjust", adjust, ADJUSTMENTS)
    found = run_plugins_or_exit(run_dirs, plugins_dir)
    reporters = found.plugins.registry("reporter")
    name = format or output_format(output, reporters)
    plugins = found.require("report", reporter=name)
    reporter = create_reporter(name, format, output, reporters)
    collected = load(run_dirs, plugins, reference=reference, adjust=adjust)
    if reference is not None:
        check_reference(reference, collected.rows)
    reporter = with_table_view(name, reporter, reporters, collected.results, metrics, columns, digits)
    text = reporter.render(collected.results)
    if output is None:
        print(text, end="")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")


# -- flag validation: a mistake exits 2 (bad usage) with the valid choices ---------------------

def _suffixes(reporters) -> dict[str, str]:
    """Output suffix -> reporter name: the builtin table, plus each plugin reporter's own
    suffix that no other reporter claims."""
    claimed: dict[str, list[str]] = {}
    for entry in reporters.entries():
        suffix = getattr(entry.factory, "suffix", None)
        if isinstance(suffix, str) and suffix:
            claimed.setdefault(suffix.lower(), []).append(entry.name)
    return {**{s: names[0] for s, names in claimed.items() if len(names) == 1}, **SUFFIX_FORMATS}


def output_format(output: Path | None, reporters) -> str:
    """The reporter `-o`'s suffix names (markdown with no `-o` or no suffix); an unknown
    suffix is refused, never written as markdown."""
    if output is None or not output.suffix:
        return "md"
    suffixes = _suffixes(reporters)
    suffix = output.suffix.lower()
    if suffix not in suffixes:
        from arkd_bench.plugins.registry import unknown_name_message

        usage_error(f"-o {output}: {unknown_name_message('output suffix', suffix, list(suffixes))}; "
                    "or choose the format with --format")
    return suffixes[suffix]


def create_reporter(name: str, format: str | None, output: Path | None, reporters):
    """The reporter `name`; exit 2 when it is not registered, or when `-o`'s suffix belongs
    to another format than the one --format asks for."""
    from arkd_bench.plugins.registry import unknown_name_message

    if name not in reporters:
        if format is None:  # named by -o's suffix
            usage_error(f"-o {output}: {output.suffix} files are written by the {name!r} reporter, which is not "
                        f"registered (registered: {', '.join(reporters.names())}); choose one with --format")
        usage_error(f"--format: {unknown_name_message('reporter', name, reporters.names())}")
    factory = reporters.get(name).factory
    suffix = output.suffix.lower() if output is not None else ""
    other = _suffixes(reporters).get(suffix)
    own = str(getattr(factory, "suffix", "") or "")
    if other is not None and other != name and suffix != own.lower():
        rename = f", or name the file {output.with_suffix(own)}" if own else ""
        usage_error(f"--format {name} with -o {output}: {suffix} is the suffix of the {other!r} reporter; "
                    f"drop --format to write {other}{rename}")
    return factory()


def check_reference(reference: str, rows) -> None:
    """--reference must name a method of the runs (a typo would leave every Δ column empty)."""
    methods = sorted({row.method for row in rows})
    if reference not in methods:
        from arkd_bench.plugins.registry import unknown_name_message

        usage_error(f"--reference: {unknown_name_message('method', reference, methods)} (the methods of these runs)")


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

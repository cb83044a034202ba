from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import bad_choice, err, fail, out, usage_error


def check_run_dirs(run_dirs: list[Path]) -> None:
    for run_dir in run_dirs:
        if not (run_dir / "run.json").is_file():
            fail(f"{run_dir}: not a run folder (no run.json); give the folder `arkd-bench run --out` wrote")


def default_format() -> str:
    """A table on a terminal; in a pipe or CI one line per check (annotations on GitHub)."""
    if sys.stdout.isatty():
        return "table"
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


def check(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run folders (shards are merged)")],
    recipe: Annotated[Path | None, typer.Option(
        "--recipe", help="evaluate the `checks:` of this YAML file (a recipe or just `checks:`) instead of "
                         "the run folders' own recipes; no rerun needed")] = None,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="golden baseline JSON to compare with")] = None,
    tolerance: Annotated[list[str] | None, typer.Option(
        "--tolerance", metavar="TOL|METRIC=TOL",
        help="allowed move in the worse direction vs the baseline: 0.5 (absolute), 10% (relative), "
             "0.01+5% (both) or spread (the baseline's 95% interval); repeat METRIC=TOL per metric. "
             "Default: the interval, capped by the metric's scale (1 point for percentages, 10% for nats)")] = None,
    write_baseline: Annotated[Path | None, typer.Option(
        "--write-baseline", help="write the current per-row means and intervals as a golden baseline JSON")] = None,
    format: Annotated[str | None, typer.Option(
        "--format", help="table, text (one line per check), github (annotations) or json; "
                         "default: table on a terminal, else github under GitHub Actions, else text")] = None,
    summary: Annotated[Path | None, typer.Option(
        "--summary", help="append a markdown summary here; default $GITHUB_STEP_SUMMARY when set")] = None,
    plugins_dir: Annotated[list[Path] | None, typer.Option(
        "--plugins-dir", help="folder of plugin .py files: more plugins, or files a run folder lacks "
                              "(each run's own plugin files are loaded from its copies anyway)")] = None,
) -> None:
    """Evaluate recipe checks and a golden baseline; exit 1 when any check fails."""
    from arkd_bench.cli.run_plugins import run_plugins_or_exit
    from arkd_bench.recipe.loader import RecipeError
    from arkd_bench.report import check_output, checks
    from arkd_bench.report.rows import load

    check_run_dirs(run_dirs)
    format = format or default_format()
    if format not in check_output.FORMATS:
        bad_choice("--format", format, check_output.FORMATS)
    stored = None
    if baseline is not None:
        try:
            golden = json.loads(baseline.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            fail(f"--baseline {baseline}: {exc}")
        stored = golden.get("tolerance")
    try:
        tol = checks.Tolerance.parse(tolerance or [], stored)
    except checks.ToleranceFlagError as exc:
        usage_error(str(exc))
    except ValueError as exc:
        fail(str(exc))
    collected = load(run_dirs, run_plugins_or_exit(run_dirs, plugins_dir).require("check"))
    known = {m for row in collected.rows for m in row["metrics"]}
    if baseline is not None:
        known |= {m for row in golden.get("rows") or [] if isinstance(row, dict) for m in row.get("metrics") or {}}
    problems = checks.unknown_tolerance_metrics(tolerance or [], sorted(known))
    if problems:
        usage_error("\n".join(problems))
    try:
        if recipe is not None:
            located = checks.read_checks(recipe)
            checks.validate_against_runs(recipe, located, collected)
        else:
            located = checks.recipe_checks(run_dirs)
    except RecipeError as exc:
        for line in exc.format().splitlines():
            err.print(line, markup=False)
        raise typer.Exit(1) from None
    results = checks.run_checks(collected, located)
    if baseline is not None:
        compared = checks.compare_baseline(collected, golden, tol)
        for r in compared:  # annotations of a baseline comparison point at the baseline file
            r.file = str(baseline)
        results += compared
    if write_baseline is not None:
        try:
            checks.write_baseline(collected, write_baseline, tol if tolerance else None)
        except ValueError as exc:
            fail(str(exc))
        err.print(f"baseline written: {write_baseline}", markup=False)
    if not results:
        err.print("warning: nothing to check: the recipe has no `checks:` and no --baseline was given", markup=False)
        return
    _print(results, format)
    summary = summary or (Path(os.environ["GITHUB_STEP_SUMMARY"]) if os.environ.get("GITHUB_STEP_SUMMARY") else None)
    if summary is not None:
        with summary.open("a", encoding="utf-8") as handle:
            handle.write(check_output.markdown_summary(results))
    if any(not r.passed for r in results):
        raise typer.Exit(1)


def _print(results, format: str) -> None:
    from arkd_bench.report import check_output

    if format == "json":
        print(check_output.json_text(results))
        return
    if format == "table":
        from rich.table import Table

        table = Table("check", "where", "numbers", "result", "reason")
        for r in results:
            table.add_row(r.check, r.where, r.numbers, "[green]pass[/green]" if r.passed else "[red]FAIL[/red]",
                          r.reason)
        out.print(table)
        for r in results:
            if not r.passed:
                out.print(check_output.text_line(r), markup=False)
    else:
        line = check_output.github_line if format == "github" else check_output.text_line
        for r in results:
            print(line(r))
    print(check_output.summary_line(results))

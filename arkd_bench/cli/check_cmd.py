from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import bad_choice, err, fail, out, recipe_error_exit, usage_error


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
    from arkd_bench.report import baseline as baselines
    from arkd_bench.report import check_output, checks
    from arkd_bench.report.rows import load

    check_run_dirs(run_dirs)
    format = format or default_format()
    if format not in check_output.FORMATS:
        bad_choice("--format", format, check_output.FORMATS)
    golden = _read_baseline(baseline) if baseline is not None else None
    tol = _tolerance(tolerance or [], golden)
    collected = load(run_dirs, run_plugins_or_exit(run_dirs, plugins_dir).require("check"))
    known = {m for row in collected.rows for m in row.metrics}
    if golden is not None:
        known |= {m for row in golden.get("rows") or [] if isinstance(row, dict) for m in row.get("metrics") or {}}
    problems = baselines.unknown_tolerance_metrics(tolerance or [], sorted(known))
    if problems:
        usage_error("\n".join(problems))
    results = checks.run_checks(collected, _located_checks(run_dirs, recipe, collected))
    if golden is not None:  # annotations of a baseline comparison point at the baseline file
        results += baselines.compare_baseline(collected, golden, tol, file=str(baseline))
    if write_baseline is not None:
        try:
            baselines.write_baseline(collected, write_baseline, tol if tolerance else None)
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


def _read_baseline(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        fail(f"--baseline {path}: {exc}")


def _tolerance(values: list[str], golden: dict | None):
    """--tolerance over the baseline's stored tolerance: a bad flag exits 2, a bad stored value 1."""
    from arkd_bench.report.baseline import Tolerance, ToleranceFlagError

    try:
        return Tolerance.parse(values, golden.get("tolerance") if golden is not None else None)
    except ToleranceFlagError as exc:
        usage_error(str(exc))
    except ValueError as exc:
        fail(str(exc))


def _located_checks(run_dirs: list[Path], recipe: Path | None, collected):
    """The checks of `--recipe` (their names checked against the runs), else the runs' own."""
    from arkd_bench.recipe.loader import RecipeError
    from arkd_bench.report import checks

    try:
        if recipe is not None:
            return checks.read_checks(recipe, collected)
        return checks.recipe_checks(run_dirs)
    except RecipeError as exc:
        recipe_error_exit(exc)


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

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import err, fail, out


def check_run_dirs(run_dirs: list[Path]) -> None:
    for run_dir in run_dirs:
        if not (run_dir / "run.json").is_file():
            fail(f"{run_dir}: not a run folder (no run.json); give the folder `arkd-bench run --out` wrote")


def check(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run folders (shards are merged)")],
    baseline: Annotated[Path | None, typer.Option("--baseline", help="golden baseline JSON to compare with")] = None,
    tolerance: Annotated[list[str] | None, typer.Option(
        "--tolerance", metavar="FLOAT|METRIC=FLOAT",
        help="allowed move in the worse direction vs the baseline (absolute); repeat METRIC=FLOAT per metric")] = None,
    write_baseline: Annotated[Path | None, typer.Option(
        "--write-baseline", help="write the current per-row means as a golden baseline JSON")] = None,
) -> None:
    """Evaluate the recipe's `checks:` and a golden baseline; exit 1 when any check fails."""
    from rich.table import Table

    from arkd_bench.plugins import default_plugins
    from arkd_bench.report import checks
    from arkd_bench.report.results import load

    check_run_dirs(run_dirs)
    stored = None
    if baseline is not None:
        try:
            golden = json.loads(baseline.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            fail(f"--baseline {baseline}: {exc}")
        stored = golden.get("tolerance")
    try:
        tol = checks.Tolerance.parse(tolerance or [], stored)
    except ValueError as exc:
        fail(str(exc))
    collected = load(run_dirs, default_plugins())
    results = checks.run_checks(collected, checks.recipe_checks(run_dirs))
    if baseline is not None:
        results += checks.compare_baseline(collected, golden, tol)
    if write_baseline is not None:
        try:
            checks.write_baseline(collected, write_baseline, tol if tolerance else None)
        except ValueError as exc:
            fail(str(exc))
        out.print(f"baseline written: {write_baseline}", markup=False)
    if not results:
        err.print("warning: nothing to check: the recipe has no `checks:` and no --baseline was given", markup=False)
        return
    table = Table("check", "where", "numbers", "result", "reason")
    for r in results:
        table.add_row(r.check, r.where, r.numbers, "[green]pass[/green]" if r.passed else "[red]FAIL[/red]", r.reason)
    out.print(table)
    failed = [r for r in results if not r.passed]
    # One plain line per failure as well: CI logs are read narrow, where table cells wrap.
    for r in failed:
        out.print(f"FAIL {r.check} [{r.where}]: {r.reason}", markup=False)
    out.print(f"{len(results)} checks: {len(results) - len(failed)} passed, {len(failed)} failed", markup=False)
    if failed:
        raise typer.Exit(1)

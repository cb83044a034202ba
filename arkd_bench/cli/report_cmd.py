from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import fail


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run folders (shards are merged)")],
    format: Annotated[str, typer.Option("--format", "-f", help="a registered reporter: md, json, csv, ...")] = "md",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
    reference: Annotated[str | None, typer.Option(help="method to compare with; default the recipe's")] = None,
) -> None:
    """Render the leaderboard of finished run folders."""
    from arkd_bench.plugins import default_plugins
    from arkd_bench.registry import RegistryError
    from arkd_bench.report.results import annotate_metrics, collect

    for run_dir in run_dirs:
        if not (run_dir / "run.json").is_file():
            fail(f"{run_dir}: not a run folder (no run.json); give the folder `arkd-bench run --out` wrote")
    plugins = default_plugins()
    try:
        reporter = plugins.create("reporter", format)
    except RegistryError as exc:
        fail(f"--format: {exc}")
    text = reporter.render(annotate_metrics(collect(run_dirs, reference=reference), plugins))
    if output is None:
        print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")

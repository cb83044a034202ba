from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import err, fail, load_or_exit, out, usage_error


class RichProgress:
    """Two bars: cells of the grid, and steps of the cell now training."""

    def __init__(self, total_cells: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=err, transient=False)
        self.cells = self.progress.add_task("cells", total=total_cells)
        self.steps = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start_cell(self, label: str, cell):
        if self.steps is not None:
            self.progress.remove_task(self.steps)
        self.steps = self.progress.add_task(f"  {label}", total=None)

        def on_step(step: int, loss: float) -> None:
            self.progress.update(self.steps, completed=step + 1, description=f"  {label} loss={loss:.3f}")

        return on_step

    def cell_done(self, label: str, skipped: bool = False) -> None:
        if skipped:
            self.progress.console.print(f"skip {label} (finished earlier)", markup=False)
        self.progress.advance(self.cells)


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", value)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        usage_error(f"--shard {value!r}: expected i/n with 1 <= i <= n, e.g. 2/4")
    return int(match[1]), int(match[2])


def run(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file")],
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="run folder; default runs/<recipe name>")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the cells and exit")] = False,
    shard: Annotated[str | None, typer.Option(help="run shard i/n of the grid, e.g. 1/4")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="cache of tokenizers and SFT models")] = None,
    plugins_dir: Annotated[list[Path] | None, typer.Option("--plugins-dir", help="folder of plugin .py files")] = None,
) -> None:
    """Run a recipe's grid; rerunning on the same folder resumes and skips finished cells."""
    shard_spec = _parse_shard(shard)  # usage first: a bad option is reported before the recipe is read
    where = _Where()
    try:
        _run(recipe, out_dir, dry_run, shard_spec, cache_dir, plugins_dir, where)
    except KeyboardInterrupt as exc:  # SIGINT at any moment; SIGTERM too while cells run (RunInterrupted)
        signum = getattr(exc, "signum", signal.SIGINT)
        err.print(where.interruption(signal.Signals(signum).name), markup=False)
        raise typer.Exit(128 + signum) from None


class _Where:
    """How far a run got: its cells and folder once known, to say what an interruption left."""

    cell_ids: list[str] | None = None
    out: Path | None = None

    def interruption(self, signal_name: str) -> str:
        from arkd_bench.faults import interruption_message, run_folder_state

        statuses, reports = None, False
        if self.cell_ids is not None and self.out is not None:
            try:
                statuses, reports = run_folder_state(self.out, self.cell_ids)
            except OSError:
                pass
        return interruption_message(signal_name, self.out, statuses, reports)


def _run(recipe: Path, out_dir: Path | None, dry_run: bool, shard_spec, cache_dir: Path | None,
         plugins_dir: list[Path] | None, where: _Where) -> None:
    from arkd_bench.recipe.matrix import expand
    from arkd_bench.recipe.matrix import shard as take_shard

    loaded = load_or_exit(recipe, plugins_dir)
    if loaded.recipe.select is not None:
        err.print(f"note: run uses the methods as written; `arkd-bench select {recipe}` chooses the settings "
                  "under select: on the dev split and writes the recipe to run", markup=False)
    cells = expand(loaded.recipe)
    if shard_spec:
        cells = take_shard(cells, *shard_spec)
    out_dir = out_dir or Path("runs") / loaded.recipe.name
    if dry_run:
        for c in cells:
            out.print(f"{c.id}  {c.kind:8s} {c.dataset}/{c.teacher}->{c.student or '-'}  {c.method} seed={c.seed}",
                      markup=False)
        out.print(f"{len(cells)} cells would run into {out_dir}")
        return
    where.cell_ids, where.out = [c.id for c in cells], out_dir
    from arkd_bench.faults import RunAborted
    from arkd_bench.rundir.store import RunDirError
    from arkd_bench.run.grid import run_recipe
    from arkd_bench.train.trackers import TrackerError

    try:
        with RichProgress(len(cells)) as progress:
            summary = run_recipe(loaded, out_dir, shard_spec=shard_spec, cache_dir=cache_dir,
                                 progress=progress, say=lambda m: err.print(m, markup=False))
    except (RunDirError, RunAborted, TrackerError) as exc:
        fail(str(exc))
    except OSError as exc:  # the run folder itself cannot be written (full disk, permissions, a file in the way)
        fail(f"{out_dir}: {exc}")
    if not summary.main:
        return
    out.print(f"ran {len(summary.ran)} cells, skipped {len(summary.skipped)} finished, "
              f"{len(summary.failed)} failed")
    out.print(f"leaderboard: {summary.out / 'leaderboard.md'}")
    out.print(f"results:     {summary.out / 'results.json'}")
    if summary.failed:
        raise typer.Exit(1)

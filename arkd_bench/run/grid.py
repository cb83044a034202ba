"""Run a recipe's grid: cells in order, finished ones skipped, each cell's outcome
written before the next starts, failures recorded without stopping the grid."""
from __future__ import annotations

import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from arkd_bench.faults import INTERRUPTED, RunAborted, RunInterrupted, describe_failure, stop_on_signals
from arkd_bench.recipe.matrix import Cell, expand, shard
from arkd_bench.recipe.validate import LoadedRecipe
from arkd_bench.run.artifacts import Artifacts
from arkd_bench.run.cell import run_cell
from arkd_bench.rundir.lock import describe_holder
from arkd_bench.rundir.store import DONE, FAILED, RUNNING, RunDir, atomic_write_json, atomic_write_text
from arkd_bench.run.cache import ArtifactCache, default_cache_dir


@dataclass
class RunSummary:
    out: Path
    main: bool = True  # False in the non-main processes of a multi-process run
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def run_recipe(
    loaded: LoadedRecipe,
    out: str | Path,
    *,
    shard_spec: tuple[int, int] | None = None,
    cache_dir: str | Path | None = None,
    progress=None,
    say: Callable[[str], None] = print,
) -> RunSummary:
    """Run every cell not already finished in `out`; never touch finished cells."""
    from accelerate import Accelerator, DataLoaderConfiguration

    from arkd_bench.evaluate.teacher_forced import frozen_models
    from arkd_bench.report.write import write_run_reports

    recipe = loaded.recipe
    cells = expand(recipe)
    if shard_spec is not None:
        cells = shard(cells, *shard_spec)
    # Under `accelerate launch` every process walks the same cells and trains together; each
    # generates its share of the test examples, and the main process scores and writes.
    accelerator = Accelerator(mixed_precision=recipe.train.mixed_precision, cpu=_multi_process_cpu(),
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    main = accelerator.is_main_process
    quiet_transformers()
    if not main:
        progress, say = None, (lambda message: None)
    if recipe.train.log_with and main:
        from arkd_bench.train.trackers import check_trackers

        check_trackers(list(recipe.train.log_with))  # a missing package fails now, not after the first cell
    rundir = RunDir(out, writable=main)
    stale = rundir.lock()
    if stale:
        say(f"took over the lock of a run that is no longer running: {describe_holder(stale)}")
    try:
        if main:
            _write_run_files(loaded, rundir, cells, shard_spec, accelerator.num_processes)
        root = cache_dir or (loaded.base_dir / recipe.cache_dir if recipe.cache_dir else default_cache_dir())
        art = Artifacts(loaded, ArtifactCache(root, accelerator, say=say), accelerator, say)
        summary = RunSummary(out=rundir.path, main=main)
        # teachers are never trained in a run, so their test-set passes are shared by every cell
        with stop_on_signals(), frozen_models():
            _run_cells(cells, art, rundir, summary, progress, say)
        accelerator.wait_for_everyone()
        if not main:
            return summary
        atomic_write_json(rundir.path / "cache.json", art.stats())
        write_run_reports(rundir.path, loaded.plugins)
        return summary
    finally:
        rundir.unlock()


def _write_run_files(loaded: LoadedRecipe, rundir: RunDir, cells, shard_spec, processes: int) -> None:
    """Everything report and check read, so the folder works anywhere once moved or copied."""
    from arkd_bench.rundir.plugin_files import data_sources, keep_plugin_files

    atomic_write_text(rundir.path / "recipe.yaml", loaded.text)
    kept = keep_plugin_files(rundir.path, loaded.plugins, [loaded.base_dir / p for p in loaded.recipe.plugins])
    atomic_write_json(rundir.path / "run.json", {
        "recipe": loaded.recipe.name, "recipe_path": str(loaded.path.resolve()),
        "shard": list(shard_spec) if shard_spec else None, "processes": processes,
        "plugins": kept, "datasets": data_sources(loaded), "cells": [c.summary() for c in cells]})


def _run_cells(cells, art: Artifacts, rundir: RunDir, summary: RunSummary, progress, say) -> None:
    """Each cell not finished yet, its outcome written before the next starts. A cell's own
    error (a plugin's included, named) or a full disk fails that cell; a signal marks the
    running cell unfinished and stops the run (RunInterrupted); a failure that cannot even be
    recorded stops it too (RunAborted)."""
    for cell in cells:
        try:
            _run_one(cell, art, rundir, summary, progress, say)
        except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM through stop_on_signals
            name = exc.args[0] if isinstance(exc, RunInterrupted) else "SIGINT"
            if (rundir.status(cell.id) or {}).get("status") == RUNNING:
                rundir.set_status(cell.id, INTERRUPTED, error=f"stopped by {name}; a rerun redoes this cell")
            raise RunInterrupted(getattr(exc, "signum", signal.SIGINT)) from None


def _run_one(cell, art: Artifacts, rundir: RunDir, summary: RunSummary, progress, say) -> None:
    art.accelerator.wait_for_everyone()
    label = f"{cell.method} seed={cell.seed} [{cell.dataset}/{cell.teacher}->{cell.student or '-'}] {cell.id}"
    if rundir.is_done(cell.id) and not _rerun_reason(cell, art, rundir, label, say):
        summary.skipped.append(cell.id)
        if progress:
            progress.cell_done(label, skipped=True)
        return
    rundir.write(cell.id, "cell.json", {**cell.summary(), "config": cell.config})
    rundir.set_status(cell.id, RUNNING)
    on_step = progress.start_cell(label, cell) if progress else None
    try:
        run_cell(cell, art, rundir, on_step=on_step)
    except Exception as exc:  # one cell's failure must not lose the grid
        message = describe_failure(exc, art.loaded.plugins)
        try:
            rundir.set_status(cell.id, FAILED, error=message, traceback=traceback.format_exc())
        except OSError as status_exc:
            raise RunAborted(f"cell {cell.id} failed ({message}) and its failure could not be recorded "
                             f"either ({status_exc}); finished cells are intact") from None
        summary.failed[cell.id] = message
        say(f"cell {label} failed: {message}")
    else:
        rundir.set_status(cell.id, DONE)
        summary.ran.append(cell.id)
    if progress:
        progress.cell_done(label)


def _rerun_reason(cell: Cell, art: Artifacts, rundir: RunDir, label: str, say) -> bool:
    """Whether a finished cell runs again (said why): its sources changed, or the run saves
    students now and it has none."""
    changed = changed_sources(cell, art, rundir)
    unsaved = not changed and _student_unsaved(cell, art, rundir)
    if changed:
        say(f"cell {label} was finished with other content than its sources hold now "
            f"({'; '.join(changed)}); running it again")
    elif unsaved:
        say(f"cell {label} is finished but saved no student (train.save_student is on now): re-running to save "
            "its student (training is seeded by the cell, so it is the same student; its scores are rewritten)")
    return bool(changed or unsaved)


def changed_sources(cell: Cell, art: Artifacts, rundir: RunDir) -> list[str]:
    """The sources (model and tokenizer files, hub commits) a finished cell recorded in its
    provenance that hold other content now: such a cell is not counted as done. A cell id
    follows the recipe, not the files it names, so this is where new weights under an old path
    are caught. Cells that recorded no sources (older runs) are taken as they are."""
    from arkd_bench.models.identity import describe_change

    try:
        recorded = (rundir.read(cell.id, "provenance.json") or {}).get("sources") or {}
    except (OSError, ValueError, AttributeError):
        return []
    if not recorded:
        return []
    try:
        current = art.files.cell_sources(cell)
    except Exception:  # noqa: BLE001 - a source that cannot be read now fails the cells that use it
        return []
    changed = []
    for role, old in recorded.items():
        now = current.get(role)
        if now is not None and isinstance(old, dict) and old.get("sha256") != now.sha256:
            changed.append(f"{role}: {now.label}: {describe_change(old, now)}")
    return changed


def _student_unsaved(cell, art: Artifacts, rundir: RunDir) -> bool:
    """A finished distill cell without a complete saved student, in a run that saves them.
    Cells keep no weights, so the only way to its student is to train it again."""
    from arkd_bench.models.export import STUDENT_DIR, missing_parts

    if not art.recipe.train.save_student or cell.kind != "distill":
        return False
    return bool(missing_parts(rundir.cell_dir(cell.id) / STUDENT_DIR))


def _multi_process_cpu() -> bool:
    """Several processes (torchrun) on a machine without CUDA: accelerate then needs
    cpu=True to pick the gloo backend instead of running each process alone."""
    import os

    import torch

    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def quiet_transformers() -> None:
    """Our own progress bars say what runs; transformers' per-load bars would drown them."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()

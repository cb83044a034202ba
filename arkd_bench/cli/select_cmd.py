from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import err, fail, load_or_exit, out


def select(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file with a `select:` section")],
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="selection run folder; default "
                                                 "runs/<recipe name>-select")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the candidates and cells and exit")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="cache of tokenizers and SFT models")] = None,
    plugins_dir: Annotated[list[Path] | None, typer.Option("--plugins-dir", help="folder of plugin .py files")] = None,
) -> None:
    """Choose the settings in a recipe's `select:` on the dev split: train and score every candidate on
    the validation split (the test split is never evaluated), write selection.json, selection.md and
    selected.yaml (the recipe with the chosen settings, for `arkd-bench run`) into the run folder.
    Rerunning on the same folder resumes."""
    from arkd_bench.recipe.matrix import expand
    from arkd_bench.recipe.select import candidates, selection_recipe

    loaded = load_or_exit(recipe, plugins_dir)
    if loaded.recipe.select is None:
        fail(f"{recipe}: the recipe has no `select:` section, so there is nothing to choose "
             "(README: Choosing settings on the dev split)")
    found = candidates(loaded.recipe, loaded.plugins)
    out_dir = out_dir or Path("runs") / f"{loaded.recipe.name}-select"
    grid = _selection_grid(loaded, selection_recipe(loaded.recipe, loaded.base_dir, found), out_dir)
    cells = expand(grid.recipe)
    if dry_run:
        for c in found:
            out.print(f"{c.name}  (changes {c.changed} of the method's settings)", markup=False)
        out.print(f"{len(found)} candidates, {len(cells)} cells on the dev split would run into {out_dir}")
        return
    _run_grid(grid, cells, out_dir, cache_dir)
    _write_selection(loaded, grid, found, out_dir)


def _selection_grid(loaded, data: dict, out_dir: Path):
    """The dev-split grid as a loaded recipe, checked as `validate` checks (every candidate's
    strategy built once); its text is what the run folder keeps as recipe.yaml."""
    import yaml

    from arkd_bench.recipe.loader import RecipeError
    from arkd_bench.recipe.validate import LoadedRecipe, check_plugin_references, parse_recipe, strategy_problems

    text = (f"# The dev-split selection grid of {loaded.path}, written by `arkd-bench select`: every\n"
            "# candidate scored on the validation split (eval.split: valid); the test split is never evaluated.\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    file = str(out_dir / "recipe.yaml")
    try:
        recipe, lines = parse_recipe(text, file)
        problems = check_plugin_references(recipe, loaded.plugins) + strategy_problems(recipe, loaded.plugins)
        if problems:
            raise RecipeError(file, problems, lines)
    except RecipeError as exc:
        fail(f"the selection grid made from {loaded.path} is not valid:\n{exc.format()}")
    return LoadedRecipe(recipe=recipe, path=out_dir / "recipe.yaml", text=text, plugins=loaded.plugins)


def _run_grid(grid, cells, out_dir: Path, cache_dir: Path | None) -> None:
    from arkd_bench.cli.run_cmd import RichProgress
    from arkd_bench.faults import RunAborted
    from arkd_bench.rundir.store import RunDirError
    from arkd_bench.run.grid import run_recipe
    from arkd_bench.train.trackers import TrackerError

    try:
        with RichProgress(len(cells)) as progress:
            summary = run_recipe(grid, out_dir, cache_dir=cache_dir, progress=progress,
                                 say=lambda m: err.print(m, markup=False))
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        err.print(f"stopped by {signal.Signals(signum).name}: finished cells in {out_dir} are kept; "
                  "the same command resumes", markup=False)
        raise typer.Exit(128 + signum) from None
    except (RunDirError, RunAborted, TrackerError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{out_dir}: {exc}")
    out.print(f"ran {len(summary.ran)} cells, skipped {len(summary.skipped)} finished, "
              f"{len(summary.failed)} failed")


def _write_selection(loaded, grid, found, out_dir: Path) -> None:
    """Score the candidates from the run's results.json, choose, and write the three files."""
    import yaml

    from arkd_bench.recipe.schema import Recipe
    from arkd_bench.recipe.select import choose, final_recipe, metric_spec, render_markdown, selection_record, tabulate
    from arkd_bench.rundir.store import RunDir, atomic_write_json, atomic_write_text

    recipe = loaded.recipe
    results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    metric = metric_spec(recipe).name
    higher = results.get("metric_info", {}).get(metric, {}).get("higher_is_better", True)
    rows = tabulate(found, results["cells"], metric, list(recipe.select.seeds))
    choices = [choose([r for r in rows if r.candidate.method == m], higher, recipe.select.tie_within)
               for m in recipe.select.methods]
    record = selection_record(recipe, found, rows, choices, higher_is_better=higher,
                              dev_examples=_dev_examples(RunDir(out_dir), results["cells"]),
                              selection_run=str(out_dir), selected_recipe=str(out_dir / "selected.yaml"))
    markdown = render_markdown(record)
    atomic_write_json(out_dir / "selection.json", record)
    atomic_write_text(out_dir / "selection.md", markdown + "\n")
    out.print(markdown, markup=False)
    failed = [r.candidate.name for r in rows if r.problem]
    if any(c.chosen is None for c in choices):
        fail(f"no candidate of {', '.join(c.method for c in choices if c.chosen is None)} finished; "
             f"no selected.yaml written (see {out_dir / 'selection.md'})")
    chosen = {c.method: c.chosen.candidate for c in choices}
    note = (f"settings of {', '.join(chosen)} chosen on the dev split by arkd-bench select: "
            f"{', '.join(c.name for c in chosen.values())}; table in {out_dir / 'selection.md'}")
    final = final_recipe(recipe, loaded.base_dir, chosen, note)
    Recipe.model_validate(final)  # what run will read; a mistake here is ours, not the user's
    final_out = Path("runs") / f"{recipe.name}-selected"
    header = [f"Written by `arkd-bench select {loaded.path}`: that recipe with the settings chosen on the",
              f"dev split (the table below; also {out_dir / 'selection.json'}). Run it on test:",
              f"  arkd-bench run {out_dir / 'selected.yaml'} --out {final_out}", "", *markdown.splitlines()]
    text = "".join(f"# {line}".rstrip() + "\n" for line in header) + yaml.safe_dump(final, sort_keys=False,
                                                                                   allow_unicode=True)
    atomic_write_text(out_dir / "selected.yaml", text)
    out.print(f"selection: {out_dir / 'selection.md'} (and selection.json)")
    out.print(f"next, on test: arkd-bench run {out_dir / 'selected.yaml'} --out {final_out}")
    if failed:
        err.print(f"warning: candidates with a failed cell were not eligible: {', '.join(failed)}", markup=False)
        raise typer.Exit(1)


def _dev_examples(rundir, cells) -> str:
    """How many validation examples each dataset's candidates were scored on (scores.json)."""
    counts = {}
    for cell in cells:
        if cell.get("kind") == "distill" and cell.get("status") == "done" and cell["dataset"] not in counts:
            try:
                settings = rundir.read(cell["id"], "scores.json").get("settings", {})
            except (OSError, ValueError):
                continue
            counts[cell["dataset"]] = settings.get("examples")
    return ", ".join(f"{n} validation examples of {name}" for name, n in counts.items()) or "no finished cell"

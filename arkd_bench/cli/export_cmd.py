from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arkd_bench.cli.common import fail, out


def export(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    cell: Annotated[str, typer.Argument(
        help="the cell: METHOD:SEED, METHOD (when it has one seed), its id or a unique prefix of the id")],
    output: Annotated[Path, typer.Argument(help="the folder to write (config, weights, tokenizer, generation config)")],
    force: Annotated[bool, typer.Option("--force", help="replace OUTPUT when it exists and is not empty")] = False,
) -> None:
    """Write a cell's distilled student as a Hugging Face model folder (from_pretrained, lm-eval).

    The run must have saved it (train.save_student); when it did not, the error gives the
    command that does: the same recipe with save_student on, into the same run folder."""
    from arkd_bench.models.export import ExportError, export_student

    if not run_dir.is_dir():
        fail(f"{run_dir}: no such run folder")
    try:
        folder = export_student(run_dir, cell, output, force=force)
    except ExportError as exc:
        fail(str(exc))
    except OSError as exc:  # OUTPUT cannot be written (permissions, a full disk, a file in the way)
        fail(f"{output}: {exc}")
    out.print(f"student written to {folder}; load it with AutoModelForCausalLM.from_pretrained({str(folder)!r}) "
              f"or `lm_eval --model hf --model_args pretrained={folder}`", markup=False)

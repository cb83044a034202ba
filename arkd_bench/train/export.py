"""Students as Hugging Face model folders: what `AutoModelForCausalLM.from_pretrained`,
`AutoTokenizer.from_pretrained` and lm-evaluation-harness's `hf` model load as they are.

`save_hf_model` writes config, safetensors weights, tokenizer and generation config; a run
writes one to `cells/<id>/student/` (train.save_student) and `export_student` copies a
cell's folder anywhere (`arkd-bench export RUNDIR CELL OUT`). Both appear atomically: the
folder is written under a temporary name and renamed once complete.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from arkd_bench.rundir.store import RunDir

# A loadable folder needs these, plus weights (one file or a sharded index).
REQUIRED_FILES = ("config.json", "generation_config.json", "tokenizer_config.json")
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
STUDENT_DIR = "student"


class ExportError(ValueError):
    """No complete student to export; the message says what is missing and how to get it."""


def _write_folder(folder: Path, write) -> None:
    """Call `write(tmp)` and rename tmp onto `folder` (replacing an older one) when it returns."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        write(tmp)
        tmp.chmod(0o755)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_hf_model(model, tokenizer, folder: str | Path) -> Path:
    """Write `model` and `tokenizer` as one from_pretrained folder, generation config included.

    The generation config gets the tokenizer's eos and pad ids when the model's lacks them,
    so `generate` on the reloaded model stops and pads as the harness's generation does."""
    from transformers import GenerationConfig

    generation = getattr(model, "generation_config", None) or GenerationConfig.from_model_config(model.config)
    generation = GenerationConfig.from_dict(generation.to_dict())
    for name in ("eos_token_id", "pad_token_id", "bos_token_id"):
        if getattr(generation, name, None) is None and getattr(tokenizer, name, None) is not None:
            setattr(generation, name, getattr(tokenizer, name))

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        generation.save_pretrained(str(tmp))

    _write_folder(Path(folder), write)
    return Path(folder)


def missing_parts(folder: Path) -> list[str]:
    """What a from_pretrained folder lacks (empty when complete)."""
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHTS):
        missing.append(" or ".join(WEIGHTS))
    return missing


def find_cell(rundir: RunDir, cell: str) -> str:
    """A cell id from its full id or a unique prefix of it."""
    ids = rundir.cell_ids()
    matches = [c for c in ids if c.startswith(cell)] if cell else []
    if cell in ids:
        return cell
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ExportError(f"{rundir.path}: no cell {cell!r}; its cells are: {', '.join(ids) or 'none'}")
    raise ExportError(f"{rundir.path}: {cell!r} matches several cells ({', '.join(matches)}); give more of the id")


def student_folder(rundir: RunDir, cell: str) -> Path:
    """The complete student folder of a run's cell, or ExportError saying why there is none."""
    cell_id = find_cell(rundir, cell)
    folder = rundir.cell_dir(cell_id) / STUDENT_DIR
    if not folder.is_dir():
        kind = (rundir.read(cell_id, "cell.json") if (rundir.cell_dir(cell_id) / "cell.json").exists() else {}).get("kind")
        why = (f"a {kind} cell trains no student of its own" if kind and kind != "distill"
               else "the run did not save students; rerun with `train: {save_student: true}` (the cell id stays the same)")
        raise ExportError(f"{folder}: no saved student ({why})")
    missing = missing_parts(folder)
    if missing:
        raise ExportError(f"{folder}: not a complete model folder, missing {', '.join(missing)} "
                          f"(saved by an older version?); rerun the cell with train.save_student: true")
    return folder


def export_student(run_dir: str | Path, cell: str, out: str | Path, force: bool = False) -> Path:
    """Copy a cell's saved student to `out`, a folder from_pretrained and lm-eval load.
    An existing non-empty `out` is replaced only with `force`."""
    source = student_folder(RunDir(run_dir, writable=False), cell)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ExportError(f"{out} already exists and is not empty; choose another folder or pass --force")
    _write_folder(Path(out), lambda tmp: shutil.copytree(source, tmp, dirs_exist_ok=True))
    return Path(out)

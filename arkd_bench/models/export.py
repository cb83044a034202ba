"""Students as Hugging Face model folders: what `AutoModelForCausalLM.from_pretrained`,
`AutoTokenizer.from_pretrained` and lm-evaluation-harness's `hf` model load as they are.

`save_hf_model` writes config, safetensors weights, tokenizer and generation config; a run
writes one to `cells/<id>/student/` (train.save_student) and `export_student` copies a
cell's folder anywhere (`arkd-bench export RUNDIR CELL OUT`, CELL an id, a unique prefix of
one, or METHOD[:SEED]). Both appear atomically: the folder is written under a temporary
name and renamed once complete.

Cells keep no weights of their own, so a finished cell without a saved student can only get
one by training again: a rerun with train.save_student on does that (arkd_bench/run/grid.py), and the
export error says so with the command to run.
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


def save_hf_model(model, tokenizer, folder: str | Path, state_dict=None) -> Path:
    """Write `model` and `tokenizer` as one from_pretrained folder, generation config included;
    with `state_dict` (the gathered weights of a sharded model: `accelerator.get_state_dict`),
    those weights.

    The generation config gets the tokenizer's eos and pad ids when the model's lacks them,
    so `generate` on the reloaded model stops and pads as the harness's generation does."""
    from transformers import GenerationConfig

    generation = getattr(model, "generation_config", None) or GenerationConfig.from_model_config(model.config)
    generation = GenerationConfig.from_dict(generation.to_dict())
    for name in ("eos_token_id", "pad_token_id", "bos_token_id"):
        if getattr(generation, name, None) is None and getattr(tokenizer, name, None) is not None:
            setattr(generation, name, getattr(tokenizer, name))

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp), safe_serialization=True, state_dict=state_dict)
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


def cell_records(rundir: RunDir) -> list[dict]:
    """id, kind, method, seed, dataset, teacher, student of every cell folder (its cell.json,
    else the run's run.json), in the order of the run's grid."""
    import json

    try:
        listed = json.loads((rundir.path / "run.json").read_text(encoding="utf-8")).get("cells") or []
    except (OSError, ValueError, AttributeError):
        listed = []
    known = {c.get("id"): c for c in listed if isinstance(c, dict)}
    records = []
    for cell_id in rundir.cell_ids():
        try:
            record = rundir.read(cell_id, "cell.json")
        except (OSError, ValueError):
            record = known.get(cell_id) or {}
        records.append({**record, "id": cell_id})
    order = {cell_id: i for i, cell_id in enumerate(known)}
    return sorted(records, key=lambda r: (order.get(r["id"], len(order)), r["id"]))


def cell_label(record: dict, several_grids: bool = False) -> str:
    """`fkl:0 9052f8643b30`, with `[dataset teacher->student]` where a run has several, and
    the kind of a baseline (which has no student to export)."""
    label = f"{record.get('method', '?')}:{record.get('seed', '?')} {record['id']}"
    if several_grids:
        label += f" [{record.get('dataset')} {record.get('teacher')}->{record.get('student') or '-'}]"
    kind = record.get("kind")
    return label + (f" ({kind}: no student)" if kind and kind != "distill" else "")


def _labels(records: list[dict], all_records: list[dict]) -> str:
    several = len({(r.get("dataset"), r.get("teacher"), r.get("student")) for r in all_records
                   if r.get("kind") == "distill"}) > 1
    return ", ".join(cell_label(r, several) for r in records) or "none"


def find_cell(rundir: RunDir, cell: str) -> str:
    """A cell id from its full id, METHOD[:SEED] (a method's only cell, or its cell of that
    seed), or a unique prefix of an id, in that order of preference."""
    records = cell_records(rundir)
    ids = [r["id"] for r in records]
    if cell in ids:
        return cell
    method, colon, seed_text = cell.partition(":")
    of_method = [r for r in records if r.get("method") == method]
    if of_method:
        return _by_method(rundir, cell, method, seed_text if colon else None, of_method, records)
    matches = [c for c in ids if c.startswith(cell)] if cell else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ExportError(f"{rundir.path}: no cell {cell!r} (give METHOD, METHOD:SEED or a cell id); "
                          f"its cells are: {_labels(records, records)}")
    raise ExportError(f"{rundir.path}: {cell!r} matches several cells "
                      f"({_labels([r for r in records if r['id'] in matches], records)}); give more of the id")


def _by_method(rundir: RunDir, cell: str, method: str, seed_text: str | None, of_method: list[dict],
               records: list[dict]) -> str:
    seeds = sorted({r.get("seed") for r in of_method}, key=lambda s: (not isinstance(s, int), str(s).zfill(12)))
    if seed_text is not None:
        try:
            seed = int(seed_text)
        except ValueError:
            raise ExportError(f"{rundir.path}: {cell!r}: the seed after ':' must be a whole number; "
                              f"{method!r} has seeds {', '.join(map(str, seeds))}") from None
        chosen = [r for r in of_method if r.get("seed") == seed]
        if not chosen:
            raise ExportError(f"{rundir.path}: method {method!r} has no cell of seed {seed}; its cells are: "
                              f"{_labels(of_method, records)}")
    else:
        chosen = of_method
        if len(seeds) > 1:
            raise ExportError(f"{rundir.path}: method {method!r} has several seeds ({', '.join(map(str, seeds))}); "
                              f"give one, e.g. {method}:{seeds[0]}; its cells are: {_labels(of_method, records)}")
    if len(chosen) == 1:
        return chosen[0]["id"]
    raise ExportError(f"{rundir.path}: {cell!r} matches several cells ({_labels(chosen, records)}); "
                      "give the cell's id")


def rerun_advice(rundir: RunDir) -> str:
    """The command that saves the students of a run folder's finished cells: the same recipe
    with train.save_student on, into the same folder (the setting is not part of cell ids)."""
    import json
    import shlex

    import yaml

    try:
        run = json.loads((rundir.path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        run = {}
    try:
        saved = yaml.safe_load((rundir.path / "recipe.yaml").read_text(encoding="utf-8")) or {}
        saving = bool((saved.get("train") or {}).get("save_student"))
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        saving = False
    recorded = run.get("recipe_path") if isinstance(run, dict) else None
    recipe = recorded if recorded and Path(recorded).is_file() else None
    shard = run.get("shard") if isinstance(run, dict) else None
    command = f"arkd-bench run {shlex.quote(recipe) if recipe else 'RECIPE'} --out {shlex.quote(str(rundir.path))}"
    if shard:
        command += f" --shard {shard[0]}/{shard[1]}"
    step = "" if saving else f"set `train: {{save_student: true}}` in {recipe or 'the recipe'} and "
    which = "" if recipe else (f" (RECIPE: the recipe this run was made from{f', {recorded}' if recorded else ''}; "
                               f"a copy is in {rundir.path / 'recipe.yaml'})")
    return (f"{step}run `{command}`{which}: finished cells are kept, and each finished distill cell without a "
            "saved student is trained again from its seed (the same training) to save it")


def student_folder(rundir: RunDir, cell: str) -> Path:
    """The complete student folder of a run's cell, or ExportError saying why there is none
    and what to run to get one."""
    cell_id = find_cell(rundir, cell)
    folder = rundir.cell_dir(cell_id) / STUDENT_DIR
    if not folder.is_dir():
        kind = (rundir.read(cell_id, "cell.json") if (rundir.cell_dir(cell_id) / "cell.json").exists() else {}).get("kind")
        if kind and kind != "distill":
            raise ExportError(f"{folder}: no saved student (a {kind} cell trains no student of its own)")
        status = (rundir.status(cell_id) or {}).get("status")
        why = ("the run did not save students" if rundir.is_done(cell_id)
               else f"the cell has not finished: its status is {status or 'unknown'}")
        raise ExportError(f"{folder}: no saved student ({why}); {rerun_advice(rundir)}")
    missing = missing_parts(folder)
    if missing:
        raise ExportError(f"{folder}: not a complete model folder, missing {', '.join(missing)} "
                          f"(saved by an older version?); {rerun_advice(rundir)}")
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

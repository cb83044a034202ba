"""Matrix expansion: a recipe becomes cells with stable content-hash ids.

A cell is what one training+evaluation produces: a distilled student (one method,
one seed), or a baseline row (the teacher, the SFT-only student). Its id hashes the
resolved settings that determine its result, so renaming a recipe or reordering its
lists keeps ids, and changing anything that matters makes a new cell.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from arkd_bench.recipe.schema import Recipe

ID_LENGTH = 12
# Rows that need no model: their predictions are fixed texts.
TRIVIAL_BASELINES = ("echo", "constant")
# Resource settings that do not change what a cell computes (a checkpointed cell, resumed or
# not, trains to the same numbers as one that is not).
NOT_IN_ID = ("teacher_cache_mb", "save_student", "log_with", "tracker_options", "checkpoint_every",
             "keep_checkpoints", "gradient_checkpointing")


def content_hash(obj: Any, length: int = ID_LENGTH) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Cell:
    id: str
    kind: str  # "teacher", "sft", "distill", or a trivial baseline ("echo", "constant")
    dataset: str
    teacher: str
    student: str | None
    method: str
    seed: int
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "dataset": self.dataset,
            "teacher": self.teacher,
            "student": self.student,
            "method": self.method,
            "seed": self.seed,
        }


# Options added after cells existed: at their default they stay out of the id, so cells of
# recipes that do not set them keep their ids.
DEFAULT_NOT_IN_ID = {"optimizer": "adamw", "sharding": "none"}


def _dump(model) -> dict[str, Any]:
    dumped = model.model_dump(mode="json", exclude=set(NOT_IN_ID) & set(type(model).model_fields))
    return {k: v for k, v in dumped.items() if k not in DEFAULT_NOT_IN_ID or v != DEFAULT_NOT_IN_ID[k]}


def _method(method) -> dict[str, Any]:
    """A method's settings; the default data policy (ground truth) is left out, so cells
    from before data policies existed keep their ids."""
    dumped = _dump(method)
    if method.data.is_default:
        dumped.pop("data")
    return dumped


def expand(recipe: Recipe) -> list[Cell]:
    """Every cell of the grid, baselines first, in a deterministic order."""
    cells: list[Cell] = []
    evaluation = _dump(recipe.eval)
    evaluation.pop("reference", None)  # reporting choice, not part of any result
    if evaluation.get("split") == "test":  # the default: cells from before eval.split keep their ids
        evaluation.pop("split")
    shared = {"tokenizer": _dump(recipe.tokenizer), "eval": evaluation}
    if recipe.eval_only_datasets:
        shared["eval_sets"] = [_dump(d) for d in recipe.eval_only_datasets]
    # Baseline rows are keyed by what determines them, so changing train.steps (or any setting
    # only distillation reads) keeps their cells: an SFT stage reads only the sequence length.
    sft_train = {"max_length": recipe.train.max_length}
    for dataset in recipe.training_datasets:
        for teacher in recipe.teachers:
            base = {**shared, "dataset": _dump(dataset), "teacher": _dump(teacher)}
            if "teacher" in recipe.eval.baselines:
                teacher_base = {**base, "train": sft_train} if teacher.sft is not None else base
                cells.append(_cell("teacher", dataset.name, teacher.name, None, "teacher", 0, teacher_base))
            for trivial in TRIVIAL_BASELINES:
                if trivial in recipe.eval.baselines:
                    cells.append(_cell(trivial, dataset.name, teacher.name, None, trivial, 0, base))
            for student in recipe.students:
                with_student = {**base, "student": _dump(student)}
                for seed in recipe.seeds:
                    if "sft" in recipe.eval.baselines:
                        cells.append(_cell("sft", dataset.name, teacher.name, student.name, "sft", seed,
                                           {**with_student, "train": sft_train}))
                for method in recipe.methods:
                    for seed in recipe.seeds:
                        config = {**with_student, "train": _dump(recipe.train), "method": _method(method)}
                        cells.append(_cell("distill", dataset.name, teacher.name, student.name,
                                           method.name, seed, config))
    return cells


def _cell(kind, dataset, teacher, student, method, seed, config) -> Cell:
    config = {**config, "kind": kind, "seed": seed}
    return Cell(content_hash(config), kind, dataset, teacher, student, method, seed, config)


def shard(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """Deterministic 1-based shard `index` of `count`: the grid's cells sorted by id and dealt
    round-robin, so every job agrees without talking and every shard of a grid with at least
    `count` cells gets work (hashing ids modulo `count` left shards of small grids idle).
    Shared prerequisites (an SFT student, the teacher cache) are built once by whichever
    shard needs them first; the cache lock makes the others wait for it."""
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: index must be between 1 and {count}")
    ordered = sorted(cells, key=lambda c: c.id)
    mine = {c.id for c in ordered[index - 1::count]}
    return [c for c in cells if c.id in mine]

"""One cell of a grid, by kind: a trivial baseline, the teacher, an SFT student or a distilled
student. Each kind gives the model to evaluate; every kind is then evaluated and written the
same way (generations, scores, provenance)."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arkd_bench.data.prompt_format import raw_prompt
from arkd_bench.recipe.matrix import TRIVIAL_BASELINES, Cell
from arkd_bench.run.artifacts import Artifacts
from arkd_bench.run.shared import named
from arkd_bench.rundir.store import RunDir


@dataclass
class CellStart:
    """What every kind of cell starts from: its tokenizer and data, the teacher (None for a
    trivial baseline), and the provenance gathered so far."""

    tokenizer: Any
    data: Any
    teacher: Any
    extra: dict[str, Any]
    started: float


def start_cell(cell: Cell, art: Artifacts) -> CellStart:
    started = time.time()
    tokenizer, tok_key = art.data.tokenizer(cell.dataset, cell.teacher)
    data = art.data.splits(cell.dataset, cell.teacher)
    trivial = cell.kind in TRIVIAL_BASELINES
    teacher, teacher_key, teacher_hash = (None, None, None) if trivial else art.teacher(cell.dataset, cell.teacher)
    extra: dict[str, Any] = {"data_hash": data.content_hash, "tokenizer_key": tok_key,
                             "teacher_key": teacher_key, "teacher_weights_sha256": teacher_hash, "seed": cell.seed,
                             # what the models and tokenizer held (file hashes, hub commits), checked on resume
                             "sources": {role: i.record() for role, i in art.files.cell_sources(cell).items()}}
    if not trivial:
        extra["teacher_identity"] = art.teacher_identity(cell.dataset, cell.teacher)
    return CellStart(tokenizer, data, teacher, extra, started)


def trivial_cell(cell: Cell, art: Artifacts, rundir: RunDir, begun: CellStart, on_step=None):
    return None  # a model-free baseline: its predictions are fixed (trivial_predictions)


def teacher_cell(cell: Cell, art: Artifacts, rundir: RunDir, begun: CellStart, on_step=None):
    return begun.teacher


def sft_cell(cell: Cell, art: Artifacts, rundir: RunDir, begun: CellStart, on_step=None):
    return art.student(cell.dataset, cell.teacher, cell.student, cell.seed, sft=True, on_step=on_step)


def distill_cell(cell: Cell, art: Artifacts, rundir: RunDir, begun: CellStart, on_step=None):
    """Distil the teacher into the cell's student; write its training log and artifacts."""
    from arkd_bench.method import build_data_policy
    from arkd_bench.train.distill import Distiller
    from arkd_bench.models.vocabulary import check_vocabularies

    recipe = art.recipe
    student = art.student(cell.dataset, cell.teacher, cell.student, cell.seed, sft=recipe.train.student_sft)
    vocab = check_vocabularies(begun.teacher, student, begun.tokenizer, cell.teacher, cell.student)
    if vocab:  # padded vocabularies of different sizes: the padding columns are sliced off
        begun.extra["vocab"] = vocab
    student = lora_student(recipe, cell, student, begun.extra)
    method = named(recipe.methods, cell.method)
    policy = build_data_policy(method, art.loaded.plugins)
    items, source, built = art.training_sequences(cell.dataset, cell.teacher, policy)
    # an approximate teacher (top-k) is never used silently: every cell records what it had
    begun.extra["teacher_outputs"] = source.description
    distiller = Distiller(student=student, teacher=source, tokenizer=begun.tokenizer, train_items=items,
                          data_policy=policy, method=method, train=recipe.train, plugins=art.loaded.plugins,
                          seed=cell.seed, accelerator=art.accelerator,
                          probe_items=art.data.probe_items(cell.dataset, cell.teacher),
                          rouge_probe=art.data.rouge_probe(cell.dataset, cell.teacher))
    outcome = train_tracked(distiller, cell, recipe, rundir, on_step,
                            checkpoint_dir=rundir.cell_dir(cell.id), say=art.say)
    if not method.data.is_default:  # ground-truth cells keep their provenance and scores as before
        begun.extra["data_policy"] = {**method.data.model_dump(mode="json"), "label": policy.describe(),
                                      **({"sequences": built} if built else {}), **(outcome.data or {})}
    art.accelerator.free_memory()
    rundir.write(cell.id, "train_log.jsonl", outcome.log)
    saved, weights = student_to_save(art.accelerator, outcome, recipe.train.save_student, rundir.writable)
    if rundir.writable:
        save_training_artifacts(rundir.cell_dir(cell.id), outcome, weights, begun.tokenizer, saved)
    return outcome.student


def student_to_save(accelerator, outcome, save: bool, writable: bool):
    """(model, weights) that train.save_student writes, or (None, None): a LoRA student as a
    merged copy (a plain transformers model, loaded without peft), any other the gathered state
    dict of its prepared model (every process takes part in gathering a sharded student's)."""
    from arkd_bench.models.lora import is_lora, merged_copy
    from arkd_bench.train.sharding import full_state_dict, is_sharded

    if not save:
        return None, None
    if is_lora(outcome.student):
        merged = merged_copy(outcome.student) if writable else None
        return merged, None if merged is None else merged.state_dict()
    if is_sharded(outcome.prepared):  # FSDP2 (train.sharding), which accelerate did not wrap
        weights = full_state_dict(outcome.prepared)
        return outcome.student, weights if writable else None
    return outcome.student, accelerator.get_state_dict(outcome.prepared)


def lora_student(recipe, cell: Cell, student, extra: dict[str, Any]):
    """The student with LoRA adapters where its spec sets `lora` (only they train; the cell
    evaluates the adapted model), recorded in `extra` (provenance); else the student as given."""
    from arkd_bench.models.lora import lora_record, with_lora

    index = [s.name for s in recipe.students].index(cell.student)
    spec = recipe.students[index].lora
    if spec is None:
        return student
    student = with_lora(student, spec, f"students[{index}].lora")
    extra["lora"] = lora_record(student, spec)
    return student


def train_tracked(distiller, cell: Cell, recipe, rundir: RunDir, on_step=None, **run_options):
    """Run the distiller, its log records going to the progress bar and the trackers (train.log_with);
    `run_options` go to `Distiller.run` (the checkpoint folder, `say`)."""
    from arkd_bench.train.trackers import cell_trackers

    with cell_trackers(recipe.train, rundir, cell, recipe.name) as track:
        def on_log(record):
            if on_step:
                on_step(record["step"], record["loss"])
            if track:
                track(record)

        return distiller.run(on_log=on_log, **run_options)


CELL_KINDS: dict[str, Callable] = {"teacher": teacher_cell, "sft": sft_cell, "distill": distill_cell,
                                   **dict.fromkeys(TRIVIAL_BASELINES, trivial_cell)}


def run_cell(cell: Cell, art: Artifacts, rundir: RunDir, on_step=None) -> dict[str, Any]:
    """Train (when the cell trains) and evaluate; write every artifact of the cell. A sharded
    student is evaluated with its parameters gathered (each process generates its own share)."""
    from arkd_bench.train.sharding import full_parameters

    begun = start_cell(cell, art)
    model = CELL_KINDS[cell.kind](cell, art, rundir, begun, on_step)
    with full_parameters(model):
        return evaluate_cell(cell, art, rundir, begun, model)


def evaluate_cell(cell: Cell, art: Artifacts, rundir: RunDir, begun: CellStart, model) -> dict[str, Any]:
    """Score the cell's model on the eval split and every eval-only dataset; write its
    generations, provenance and scores. Every process generates its share of the examples;
    the main one scores and writes (the others return {})."""
    from arkd_bench.evaluate.evaluate_model import evaluate_model
    from arkd_bench.evaluate.ranks import Ranks
    from arkd_bench.rundir.provenance import accelerator_setup, provenance

    recipe, extra = art.recipe, begun.extra
    model = art.placement.for_evaluation(model)  # generation and model metrics run on the device
    ranks = Ranks.of(art.accelerator)

    def evaluate(examples):
        fixed = trivial_predictions(cell.kind, examples, begun.data.train) if cell.kind in TRIVIAL_BASELINES else None
        return evaluate_model(model, begun.tokenizer, examples, art.data.metrics(), art.data.generation_settings(),
                              teacher=begun.teacher, fixed_predictions=fixed, ranks=ranks)

    if not rundir.writable:  # a helper process: its shares only, in the main process's order
        for dataset in [cell.dataset, *(d.name for d in recipe.eval_only_datasets)]:
            evaluate(art.data.eval_examples(dataset, cell.teacher))
        return {}
    evaluation = evaluate(art.data.eval_examples(cell.dataset, cell.teacher))
    if recipe.eval.split != "test":  # test-split scores keep the settings they always had
        evaluation.settings["split"] = recipe.eval.split
    rundir.write(cell.id, "generations.jsonl", evaluation.records)
    scores = evaluation.scores()
    for dataset in recipe.eval_only_datasets:
        other = evaluate(art.data.eval_examples(dataset.name, cell.teacher))
        rundir.write(cell.id, f"evals/{dataset.name}/generations.jsonl", other.records)
        scores.setdefault("eval_sets", {})[dataset.name] = other.scores()
        extra.setdefault("eval_data_hashes", {})[dataset.name] = art.data.splits(dataset.name, cell.teacher).content_hash
    rundir.write(cell.id, "provenance.json",
                 provenance(art.loaded.base_dir, accelerator=accelerator_setup(art.accelerator, model), **extra))
    scores["seconds"] = round(time.time() - begun.started, 2)
    if "data_policy" in extra:
        scores["data_policy"] = extra["data_policy"]
    rundir.write(cell.id, "scores.json", scores)
    return scores


def trivial_predictions(kind: str, examples, train) -> list[str]:
    """What a model-free baseline answers: the prompt itself (echo), or the commonest
    training response (constant; ties go to the alphabetically first)."""
    if kind == "echo":  # the dataset's prompt, not a chat template around it
        return [raw_prompt(e) for e in examples]
    counts = Counter(e.references[0] for e in train)
    answer = min(counts, key=lambda text: (-counts[text], text))
    return [answer] * len(examples)


def save_training_artifacts(cell_dir: Path, outcome, student_weights, tokenizer, student=None) -> None:
    """The strategy's state (e.g. ARKD's policy) always; the student when its weights are given
    (train.save_student: its gathered state dict), as a complete Hugging Face folder (config,
    weights, tokenizer, generation config): `student` (default the outcome's) with those weights."""
    import torch

    from arkd_bench.models.export import STUDENT_DIR, save_hf_model

    state = outcome.strategy.state_dict()
    if state:
        torch.save(state, cell_dir / "strategy.pt")
    if student_weights is not None:
        save_hf_model(student or outcome.student, tokenizer, cell_dir / STUDENT_DIR, state_dict=student_weights)


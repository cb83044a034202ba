"""Run a recipe's grid: cells in order, finished ones skipped, each cell's outcome
written before the next starts, failures recorded without stopping the grid."""
from __future__ import annotations

import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arkd_bench.data.prompt_format import raw_prompt
from arkd_bench.faults import INTERRUPTED, RunAborted, RunInterrupted, describe_failure, stop_on_signals
from arkd_bench.recipe.matrix import TRIVIAL_BASELINES, Cell, content_hash, expand, shard
from arkd_bench.recipe.validate import LoadedRecipe
from arkd_bench.rundir.lock import describe_holder
from arkd_bench.rundir.store import DONE, FAILED, RUNNING, RunDir, atomic_write_json, atomic_write_text
from arkd_bench.train.cache import ArtifactCache, default_cache_dir


@dataclass
class RunSummary:
    out: Path
    main: bool = True  # False in the non-main processes of a multi-process run
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class RunContext:
    """Everything cells share within one run: data, tokenizers, teachers, metrics."""

    def __init__(self, loaded: LoadedRecipe, cache: ArtifactCache, accelerator, say: Callable[[str], None]):
        self.loaded, self.recipe, self.cache = loaded, loaded.recipe, cache
        self.accelerator, self.say = accelerator, say
        self._memo: dict[tuple, Any] = {}
        self.teacher_passes = 0  # full passes of a teacher over a training set (cache builds)
        self.online_teacher_batches = 0
        self.teacher_seconds = 0.0  # teacher forwards for distillation, cached or online
        self.sequence_builds = 0  # data policies' built sequences (SeqKD generations), cache misses
        self.sequence_seconds = 0.0

    def _once(self, key: tuple, build: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    # -- data -----------------------------------------------------------------
    def dataset_spec(self, name: str):
        return next(d for d in self.recipe.datasets if d.name == name)

    def data(self, name: str):
        spec = self.dataset_spec(name)
        return self._once(("data", name), lambda: self.loaded.plugins.create(
            "dataset", spec.source, **spec.options).load(self.loaded.base_dir))

    def splits(self, dataset: str, teacher: str):
        """The dataset as the teacher's cells see it: prompts in the teacher's prompt format."""
        from arkd_bench.data.prompt_format import apply_prompt_format

        spec = self.teacher_spec(teacher)
        if spec.prompt_format == "raw":
            return self.data(dataset)
        return self._once(("splits", dataset, teacher), lambda: apply_prompt_format(
            self.data(dataset), self.tokenizer(dataset, teacher)[0], spec.prompt_format, spec.system_prompt))

    def eval_examples(self, name: str, teacher: str):
        """The examples rows are scored on: the test split, or with `eval.split: valid` the
        validation split (the dev split settings are chosen on; the test split is then never read)."""
        split = self.recipe.eval.split
        examples = getattr(self.splits(name, teacher), split)
        if not examples and split != "test":
            from arkd_bench.data.base import DataError

            raise DataError(f"dataset {name!r} has no {split} examples to evaluate on (eval.split: {split})")
        limit = self.recipe.eval.max_examples
        return examples[:limit] if limit else examples

    # -- tokenizer and models --------------------------------------------------
    def teacher_spec(self, name: str):
        return next(t for t in self.recipe.teachers if t.name == name)

    def student_spec(self, name: str):
        return next(s for s in self.recipe.students if s.name == name)

    # -- content identities ------------------------------------------------------
    def source_identity(self, spec):
        """The content identity of a model spec's own files (arkd_bench.train.identity): a local
        folder's files, a hub repo's resolved commit, a GGUF file's sha256; None for `scratch`
        (its spec and seed are its identity) and `derive` (its teacher's is)."""
        from arkd_bench.train.identity import gguf_identity, path_identity

        if spec.gguf_file is not None:
            from arkd_bench.train.pretrained import locate_gguf

            return self._once(("source", "gguf", spec.distribution, spec.path, spec.revision, spec.gguf_file),
                              lambda: gguf_identity(locate_gguf(spec, self.loaded.base_dir), self.cache.file_hashes))
        if spec.path is not None:
            return self._once(("source", "path", spec.path, spec.revision),
                              lambda: path_identity(spec.path, spec.revision, self.cache.file_hashes))
        return None

    def tokenizer_source(self, teacher: str):
        """The content identity of the tokenizer's files (None for one trained on the data, which
        is keyed by the data): `tokenizer.path`, the teacher's folder or repo, or its GGUF file."""
        from arkd_bench.train.identity import path_identity

        spec, teacher_spec = self.recipe.tokenizer, self.teacher_spec(teacher)
        if not spec.path and teacher_spec.gguf_file is not None:
            return self.source_identity(teacher_spec)
        path, revision = (spec.path, None) if spec.path else (teacher_spec.path, teacher_spec.revision)
        if not path:
            return None
        return self._once(("source", "tokenizer", path, revision),
                          lambda: path_identity(path, revision, self.cache.file_hashes, what="tokenizer"))

    def sources(self, teacher: str, student: str | None = None) -> dict:
        """{role: identity} of the files the teacher (or with `student`, that student) is built
        from: its own files, a derived student's teacher, and the tokenizer. Cache entries built
        from them pass these to the cache, which says when one changed."""
        found: dict = {}

        def add(role: str, identity) -> None:
            if identity is not None and all(i.label != identity.label for i in found.values()):
                found[role] = self.cache.use_source(role, identity)

        if student is None or self.student_spec(student).derive is not None:
            add(f"teacher {teacher!r}", self.source_identity(self.teacher_spec(teacher)))
        if student is not None:
            add(f"student {student!r}", self.source_identity(self.student_spec(student)))
        add("tokenizer", self.tokenizer_source(teacher))
        return found

    def cell_sources(self, cell: Cell) -> dict:
        """The sources a cell's result depends on (recorded in its provenance, checked on resume)."""
        if cell.kind in TRIVIAL_BASELINES:
            return {}
        found = dict(self.sources(cell.teacher)) if cell.kind != "sft" else {}
        if cell.student is not None:
            found.update(self.sources(cell.teacher, cell.student))
        return found

    @staticmethod
    def pinned(spec, identity):
        """`spec` loading the hub commit its identity resolved (a moving branch cannot hand
        over other weights than the ones its keys were computed from)."""
        commit = identity.files.get("commit", "unresolved") if identity is not None else "unresolved"
        if spec.path is None or spec.gguf_file is not None or "repo" not in identity.files or commit == "unresolved":
            return spec
        return spec.model_copy(update={"revision": commit})

    def tokenizer(self, dataset: str, teacher: str):
        """(tokenizer, key): a given path, the pretrained teacher's, or a BPE trained on the data.
        The key follows the tokenizer's content (its files' hashes, its hub commit, its GGUF file)."""
        from arkd_bench.train.tokenizer import load_tokenizer, train_bpe_tokenizer

        spec, teacher_spec = self.recipe.tokenizer, self.teacher_spec(teacher)
        if not spec.path and teacher_spec.gguf_file is not None:
            folder, key = self.gguf_folder(teacher_spec)
            return self._once(("tok", key), lambda: (load_tokenizer(folder), content_hash({"gguf": key})))
        if spec.path or teacher_spec.path:
            path = spec.path or teacher_spec.path
            source = self.tokenizer_source(teacher)
            commit = source.files.get("commit") if "repo" in source.files else None
            revision = commit if commit != "unresolved" else None
            key = content_hash({"tokenizer": source.sha256})
            return self._once(("tok", key), lambda: (load_tokenizer(path, revision=revision), key))
        data = self.data(dataset)
        key = content_hash({"vocab_size": spec.vocab_size, "data": data.content_hash})

        def build(folder: Path) -> None:
            texts = [t for e in data.train for t in (e.prompt, e.references[0])]
            train_bpe_tokenizer(texts, vocab_size=spec.vocab_size).save_pretrained(str(folder))

        return self._once(("tok", key), lambda: (load_tokenizer(self.cache.get_or_build("tokenizers", key, build)), key))

    def gguf_folder(self, spec):
        """(folder, key) of a GGUF model dequantized once into the cache."""
        from arkd_bench.train.pretrained import gguf_folder

        return self._once(("gguf", spec.name), lambda: gguf_folder(spec, self.cache, self.loaded.base_dir, self.say))

    def build_model(self, spec, dataset: str, teacher: str, tokenizer):
        """A model before any SFT: pretrained, GGUF, derived from the cell's teacher, or from a config."""
        from arkd_bench.train.models import build_model

        folder = self.gguf_folder(spec)[0] if spec.gguf_file is not None else None
        source = self.teacher(dataset, teacher)[0] if spec.derive is not None else None
        return build_model(self.pinned(spec, self.source_identity(spec)), tokenizer, folder=folder, teacher=source)

    def model_identity(self, spec, dataset: str, teacher: str) -> dict:
        """What a model's weights depend on beyond its spec: the GGUF file, its folder's files or
        hub commit, or the teacher it derives from (a scratch model's spec and seed say it all)."""
        if spec.gguf_file is not None:
            return {"gguf": self.gguf_folder(spec)[1]}
        if spec.derive is not None:
            return {"teacher": self.teacher_identity(dataset, teacher)}
        if spec.path is not None:
            return {"content": self.source_identity(spec).sha256}
        return {}

    def teacher_identity(self, dataset: str, teacher: str) -> str:
        spec, key = self.teacher_spec(teacher), self.teacher(dataset, teacher)[1]
        return key or content_hash({"model": spec.model_dump(mode="json"), "tokenizer": self.tokenizer(dataset, teacher)[1],
                                    **self.model_identity(spec, dataset, teacher)})

    def _sft_model(self, kind: str, spec, dataset: str, teacher: str, seed: int, on_step=None):
        """A model after its SFT stage, from the cache or trained now. Returns (model, key, hash)."""
        from transformers import AutoModelForCausalLM

        from arkd_bench.rundir.provenance import hash_folder
        from arkd_bench.train.models import build_model
        from arkd_bench.train.sft import supervised_finetune

        tokenizer, tok_key = self.tokenizer(dataset, teacher)
        data = self.splits(dataset, teacher)
        key = content_hash({"model": spec.model_dump(mode="json"), "data": data.content_hash, "tokenizer": tok_key,
                            "seed": seed, "max_length": self.recipe.train.max_length,
                            **self.model_identity(spec, dataset, teacher)})

        def build(folder: Path) -> None:
            self.say(f"{kind} {spec.name}: SFT for {spec.sft.steps} steps (cached as {key})")
            model = self.build_model(spec, dataset, teacher, tokenizer)
            model = supervised_finetune(model, tokenizer, data.train, spec.sft, seed=seed,
                                        max_length=self.recipe.train.max_length,
                                        accelerator=self.accelerator, on_step=on_step)
            self.accelerator.free_memory()
            model.save_pretrained(str(folder), safe_serialization=True)

        sources = self.sources(teacher, None if kind == "teachers" else spec.name)
        folder = self.cache.get_or_build(kind, key, build, sources=sources)
        model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
        return model, key, self._once(("hash", str(folder)), lambda: hash_folder(folder))

    def teacher(self, dataset: str, teacher: str, on_step=None):
        from arkd_bench.train.models import build_model

        spec = self.teacher_spec(teacher)

        def build():
            if spec.sft is not None:
                return self._sft_model("teachers", spec, dataset, teacher, spec.init_seed, on_step)
            # Without SFT the teacher still depends on the dataset: its vocabulary may be trained on it.
            return self.build_model(spec, dataset, teacher, self.tokenizer(dataset, teacher)[0]).eval(), None, None

        return self._once(("teacher", dataset, teacher), build)

    def student(self, dataset: str, teacher: str, student: str, seed: int, *, sft: bool, on_step=None):
        """The student a cell starts from: its SFT checkpoint, or a fresh init seeded by the cell."""
        from arkd_bench.train.models import build_model

        spec = self.student_spec(student)
        if sft and spec.sft is not None:
            return self._sft_model("students", spec, dataset, teacher, seed, on_step)[0]
        tokenizer, _ = self.tokenizer(dataset, teacher)
        return self.build_model(spec.model_copy(update={"init_seed": spec.init_seed + seed}), dataset, teacher, tokenizer)

    def train_items(self, dataset: str, teacher: str):
        """Encoded training examples, shared by every cell on this (dataset, tokenizer)."""
        from arkd_bench.data.collate import TrainingDataset

        tokenizer, key = self.tokenizer(dataset, teacher)
        max_length = self.recipe.train.max_length
        return self._once(("items", dataset, teacher, key),
                          lambda: TrainingDataset(self.splits(dataset, teacher).train, tokenizer, max_length).items)

    def probe_items(self, dataset: str, teacher: str):
        """The held-out probe batch (validation examples) that feedback rewards are measured on."""
        from arkd_bench.data.collate import TrainingDataset

        tokenizer, key = self.tokenizer(dataset, teacher)
        valid = self.splits(dataset, teacher).valid[: self.recipe.train.batch_size]
        return self._once(("probe", dataset, teacher, key),
                          lambda: TrainingDataset(valid, tokenizer, self.recipe.train.max_length).items)

    def teacher_outputs(self, dataset: str, teacher: str, items=None, items_key: str | None = None):
        """The teacher's logits on every training item, computed once per (teacher, dataset)
        when they fit `train.teacher_cache_mb`; None means the teacher runs online."""
        from arkd_bench.train.models import vocab_size
        from arkd_bench.train.teacher_cache import TeacherOutputs, cache_bytes

        model = self.teacher(dataset, teacher)[0]
        items = self.train_items(dataset, teacher) if items is None else items
        size = cache_bytes(items, vocab_size(model))
        train = self.recipe.train
        kind = train.teacher_outputs
        if kind == "auto":
            kind = ("memory" if size <= train.teacher_cache_mb * 2**20
                    else "online" if train.teacher_cache_mb == 0 else "disk")
        if kind == "online":
            return None
        if kind != "memory":
            return self._once(("teacher_outputs", dataset, teacher, kind, *([items_key] if items_key else [])),
                              lambda: self._stored_teacher_outputs(dataset, teacher, model, items, kind))

        def build():
            self.teacher_passes += 1
            self.say(f"teacher {teacher}: caching logits of {len(items)} training examples ({size / 2**20:.0f} MB)")
            tokenizer, _ = self.tokenizer(dataset, teacher)
            started = time.time()
            outputs = TeacherOutputs.compute(model, items, tokenizer.pad_token_id, device=self.accelerator.device)
            self.teacher_seconds += time.time() - started
            return outputs

        return self._once(("teacher_outputs", dataset, teacher, *([items_key] if items_key else [])), build)

    def _stored_teacher_outputs(self, dataset: str, teacher: str, model, items, kind: str):
        """Teacher log-probs in memory-mapped files (`disk`: float16, exact but for rounding;
        `topk`: an approximation), written once per (teacher, items) into the cache."""
        from arkd_bench.train.models import vocab_size
        from arkd_bench.train.teacher_cache import StoredTeacherOutputs, items_hash

        layout = "dense" if kind == "disk" else "topk"
        k = self.recipe.train.teacher_topk
        key = content_hash({"teacher": self.teacher_identity(dataset, teacher), "items": items_hash(items),
                            "layout": layout, **({"k": k} if layout == "topk" else {})})
        vocab = vocab_size(model)

        def build(folder: Path) -> None:
            self.teacher_passes += 1
            what = "float16 log-probs" if layout == "dense" else f"top-{k} log-probs (approximate)"
            self.say(f"teacher {teacher}: writing {what} of {len(items)} training examples to disk (cached as {key})")
            started = time.time()
            StoredTeacherOutputs.write(folder, layout, model, items, self.tokenizer(dataset, teacher)[0].pad_token_id,
                                       vocab, k=k, device=self.accelerator.device)
            self.teacher_seconds += time.time() - started

        folder = self.cache.get_or_build("teacher_outputs", key, build, sources=self.sources(teacher))
        return StoredTeacherOutputs(folder, layout, vocab)

    # -- data policies -----------------------------------------------------------
    def training_sequences(self, dataset: str, teacher: str, method):
        """(policy, items, teacher outputs, provenance) of a method's training data: the dataset's
        items and the shared teacher cache, or the items its data policy builds (once per grid)."""
        spec = method.data
        policy = self.loaded.plugins.create("data_policy", spec.name, **spec.options)
        if not policy.builds_sequences:
            return policy, self.train_items(dataset, teacher), self.teacher_outputs(dataset, teacher), {}
        items, info = self.built_sequences(dataset, teacher, policy)
        if policy.targets == "tokens":
            from arkd_bench.data_policy.targets import TokenTargets
            from arkd_bench.train.models import vocab_size

            return policy, items, TokenTargets(items, vocab_size(self.teacher(dataset, teacher)[0])), info
        return policy, items, self.teacher_outputs(dataset, teacher, items, info["key"]), info

    def built_sequences(self, dataset: str, teacher: str, policy):
        """A policy's built items, from the disk cache or built now, keyed by everything they
        depend on: the policy and its settings, the teacher, and the encoded training items."""
        from arkd_bench.data_policy.session import SequenceSource
        from arkd_bench.data_policy.store import load_sequences, save_sequences

        from arkd_bench.train.teacher_cache import items_hash

        model, tokenizer = self.teacher(dataset, teacher)[0], self.tokenizer(dataset, teacher)[0]
        max_length = self.recipe.train.max_length
        prompts = self.train_items(dataset, teacher)  # their hash covers data, tokenizer and max length
        teacher_identity = self.teacher_identity(dataset, teacher)
        key = content_hash({"policy": policy.name, "settings": policy.sequence_settings(),
                            "teacher": teacher_identity, "items": items_hash(prompts)})
        sources = self.sources(teacher)

        def build(folder: Path) -> None:
            self.sequence_builds += 1
            self.say(f"data policy {policy.name}: building training sequences with teacher {teacher} (cached as {key})")
            started = time.time()
            items = policy.build_sequences(SequenceSource(teacher=model, tokenizer=tokenizer, items=prompts,
                                                          max_length=max_length, device=self.accelerator.device))
            seconds = time.time() - started
            self.sequence_seconds += seconds
            save_sequences(folder, items, {"policy": policy.name, "settings": policy.sequence_settings(),
                                           "sequences": len(items), "build_seconds": round(seconds, 2),
                                           "teacher": teacher_identity,
                                           "sources": {role: i.record() for role, i in sources.items()}})

        def load():
            items, meta = load_sequences(self.cache.get_or_build("sequences", key, build, sources=sources))
            return items, {"key": key, **meta}

        return self._once(("sequences", key), load)

    def rouge_probe(self, dataset: str, teacher: str):
        """callable(model) -> mean Rouge-L of greedy generations on validation prompts."""
        from arkd_bench.evaluate.generate import GenerationSettings, generate
        from arkd_bench.evaluate.metrics import RougeL

        tokenizer, _ = self.tokenizer(dataset, teacher)
        examples = self.splits(dataset, teacher).valid[: self.recipe.train.rouge_probe_size]
        base = self.generation_settings()
        settings = GenerationSettings(max_new_tokens=base.max_new_tokens, max_prompt_length=base.max_prompt_length,
                                      batch_size=base.batch_size)
        metric = RougeL()

        def probe(model) -> float:
            predictions = generate(model, tokenizer, [e.prompt for e in examples], settings)
            scores = metric.score(predictions, [list(e.references) for e in examples])
            return sum(scores) / max(1, len(scores))

        return probe

    def metrics(self):
        return self._once(("metrics",), lambda: [self.loaded.plugins.create("metric", m.name, **m.options)
                                                 for m in self.recipe.eval.metrics])

    def generation_settings(self):
        from arkd_bench.evaluate.generate import GenerationSettings

        return GenerationSettings.model_validate(self.recipe.eval.generation)


def run_cell(cell: Cell, ctx: RunContext, rundir: RunDir, on_step=None) -> dict[str, Any]:
    """Train (when the cell trains) and evaluate; write every artifact of the cell."""
    from arkd_bench.evaluate.evaluate_model import evaluate_model
    from arkd_bench.rundir.provenance import provenance
    from arkd_bench.train.distill import Distiller
    from arkd_bench.train.models import check_vocabularies
    from arkd_bench.train.trackers import cell_trackers

    started = time.time()
    tokenizer, tok_key = ctx.tokenizer(cell.dataset, cell.teacher)
    data = ctx.splits(cell.dataset, cell.teacher)
    trivial = cell.kind in TRIVIAL_BASELINES
    teacher, teacher_key, teacher_hash = (None, None, None) if trivial else ctx.teacher(cell.dataset, cell.teacher)
    extra: dict[str, Any] = {"data_hash": data.content_hash, "tokenizer_key": tok_key,
                             "teacher_key": teacher_key, "teacher_weights_sha256": teacher_hash, "seed": cell.seed,
                             # what the models and tokenizer held (file hashes, hub commits), checked on resume
                             "sources": {role: i.record() for role, i in ctx.cell_sources(cell).items()}}
    if not trivial:
        extra["teacher_identity"] = ctx.teacher_identity(cell.dataset, cell.teacher)
    if trivial:
        model = None
    elif cell.kind == "teacher":
        model = teacher
    elif cell.kind == "sft":
        model = ctx.student(cell.dataset, cell.teacher, cell.student, cell.seed, sft=True, on_step=on_step)
    else:
        recipe = ctx.recipe
        student = ctx.student(cell.dataset, cell.teacher, cell.student, cell.seed, sft=recipe.train.student_sft)
        check_vocabularies(teacher, student, cell.teacher, cell.student)
        method = next(m for m in recipe.methods if m.name == cell.method)
        policy, items, teacher_outputs, built = ctx.training_sequences(cell.dataset, cell.teacher, method)
        # an approximate teacher (top-k) is never used silently: every cell records what it had
        extra["teacher_outputs"] = ("online" if teacher_outputs is None
                                    else getattr(teacher_outputs, "description", type(teacher_outputs).__name__))
        distiller = Distiller(student=student, teacher=teacher, tokenizer=tokenizer,
                              train_items=items, teacher_outputs=teacher_outputs, data_policy=policy,
                              method=method, train=recipe.train, plugins=ctx.loaded.plugins, seed=cell.seed,
                              accelerator=ctx.accelerator, probe_items=ctx.probe_items(cell.dataset, cell.teacher),
                              rouge_probe=ctx.rouge_probe(cell.dataset, cell.teacher))
        with cell_trackers(recipe.train, rundir, cell, recipe.name) as track:
            def on_log(record):  # the progress bar, and the trackers (train.log_with)
                if on_step:
                    on_step(record["step"], record["loss"])
                if track:
                    track(record)

            outcome = distiller.run(on_log=on_log)
        if not method.data.is_default:  # ground-truth cells keep their provenance and scores as before
            extra["data_policy"] = {**method.data.model_dump(mode="json"), "label": policy.describe(),
                                    **({"sequences": built} if built else {}), **(outcome.data or {})}
        ctx.online_teacher_batches += distiller.online_teacher_batches
        ctx.teacher_seconds += distiller.teacher_seconds
        ctx.accelerator.free_memory()
        rundir.write(cell.id, "train_log.jsonl", outcome.log)
        if rundir.writable:
            save_training_artifacts(rundir.cell_dir(cell.id), outcome, recipe.train.save_student, tokenizer)
        model = outcome.student
    if not rundir.writable:
        return {}  # the main process evaluates

    def evaluate(examples):
        fixed = trivial_predictions(cell.kind, examples, data.train) if trivial else None
        return evaluate_model(model, tokenizer, examples, ctx.metrics(), ctx.generation_settings(),
                              teacher=teacher, fixed_predictions=fixed)

    evaluation = evaluate(ctx.eval_examples(cell.dataset, cell.teacher))
    if ctx.recipe.eval.split != "test":  # test-split scores keep the settings they always had
        evaluation.settings["split"] = ctx.recipe.eval.split
    rundir.write(cell.id, "generations.jsonl", evaluation.records)
    scores = evaluation.scores()
    for dataset in ctx.recipe.eval_only_datasets:
        other = evaluate(ctx.eval_examples(dataset.name, cell.teacher))
        rundir.write(cell.id, f"evals/{dataset.name}/generations.jsonl", other.records)
        scores.setdefault("eval_sets", {})[dataset.name] = other.scores()
        extra.setdefault("eval_data_hashes", {})[dataset.name] = ctx.splits(dataset.name, cell.teacher).content_hash
    rundir.write(cell.id, "provenance.json", provenance(ctx.loaded.base_dir, **extra))
    scores["seconds"] = round(time.time() - started, 2)
    if "data_policy" in extra:
        scores["data_policy"] = extra["data_policy"]
    rundir.write(cell.id, "scores.json", scores)
    return scores


def changed_sources(cell: Cell, ctx: RunContext, rundir: RunDir) -> list[str]:
    """The sources (model and tokenizer files, hub commits) a finished cell recorded in its
    provenance that hold other content now: such a cell is not counted as done. A cell id
    follows the recipe, not the files it names, so this is where new weights under an old path
    are caught. Cells that recorded no sources (older runs) are taken as they are."""
    from arkd_bench.train.identity import describe_change

    try:
        recorded = (rundir.read(cell.id, "provenance.json") or {}).get("sources") or {}
    except (OSError, ValueError, AttributeError):
        return []
    if not recorded:
        return []
    try:
        current = ctx.cell_sources(cell)
    except Exception:  # noqa: BLE001 - a source that cannot be read now fails the cells that use it
        return []
    changed = []
    for role, old in recorded.items():
        now = current.get(role)
        if now is not None and isinstance(old, dict) and old.get("sha256") != now.sha256:
            changed.append(f"{role}: {now.label}: {describe_change(old, now)}")
    return changed


def trivial_predictions(kind: str, examples, train) -> list[str]:
    """What a model-free baseline answers: the prompt itself (echo), or the commonest
    training response (constant; ties go to the alphabetically first)."""
    if kind == "echo":  # the dataset's prompt, not a chat template around it
        return [raw_prompt(e) for e in examples]
    counts = Counter(e.references[0] for e in train)
    answer = min(counts, key=lambda text: (-counts[text], text))
    return [answer] * len(examples)


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


def save_training_artifacts(cell_dir: Path, outcome, save_student: bool, tokenizer) -> None:
    """The strategy's state (e.g. ARKD's policy) always; the student when asked, as a complete
    Hugging Face folder (config, weights, tokenizer, generation config)."""
    import torch

    from arkd_bench.train.export import STUDENT_DIR, save_hf_model

    state = outcome.strategy.state_dict()
    if state:
        torch.save(state, cell_dir / "strategy.pt")
    if save_student:
        save_hf_model(outcome.student, tokenizer, cell_dir / STUDENT_DIR)


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
    # Under `accelerate launch` every process walks the same cells and trains together;
    # the main process alone evaluates and writes.
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
            from arkd_bench.rundir.plugin_files import data_sources, keep_plugin_files

            # Everything report and check read, so the folder works anywhere once moved or copied.
            atomic_write_text(rundir.path / "recipe.yaml", loaded.text)
            kept = keep_plugin_files(rundir.path, loaded.plugins, [loaded.base_dir / p for p in recipe.plugins])
            atomic_write_json(rundir.path / "run.json", {
                "recipe": recipe.name, "recipe_path": str(loaded.path.resolve()),
                "shard": list(shard_spec) if shard_spec else None, "processes": accelerator.num_processes,
                "plugins": kept, "datasets": data_sources(loaded), "cells": [c.summary() for c in cells]})
        root = cache_dir or (loaded.base_dir / recipe.cache_dir if recipe.cache_dir else default_cache_dir())
        ctx = RunContext(loaded, ArtifactCache(root, accelerator, say=say), accelerator, say)
        summary = RunSummary(out=rundir.path, main=main)
        # teachers are never trained in a run, so their test-set passes are shared by every cell
        with stop_on_signals(), frozen_models():
            _run_cells(cells, ctx, rundir, summary, progress, say)
        accelerator.wait_for_everyone()
        if not main:
            return summary
        atomic_write_json(rundir.path / "cache.json", {
            **ctx.cache.stats(), "teacher_passes": ctx.teacher_passes,
            "sequence_builds": ctx.sequence_builds, "sequence_seconds": round(ctx.sequence_seconds, 3),
            "online_teacher_batches": ctx.online_teacher_batches, "teacher_seconds": round(ctx.teacher_seconds, 3)})
        write_run_reports(rundir.path, loaded.plugins)
        return summary
    finally:
        rundir.unlock()


def _run_cells(cells, ctx: RunContext, rundir: RunDir, summary: RunSummary, progress, say) -> None:
    """Each cell not finished yet, its outcome written before the next starts. A cell's own
    error (a plugin's included, named) or a full disk fails that cell; a signal marks the
    running cell unfinished and stops the run (RunInterrupted); a failure that cannot even be
    recorded stops it too (RunAborted)."""
    for cell in cells:
        try:
            _run_one(cell, ctx, rundir, summary, progress, say)
        except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM through stop_on_signals
            name = exc.args[0] if isinstance(exc, RunInterrupted) else "SIGINT"
            if (rundir.status(cell.id) or {}).get("status") == RUNNING:
                rundir.set_status(cell.id, INTERRUPTED, error=f"stopped by {name}; a rerun redoes this cell")
            raise RunInterrupted(getattr(exc, "signum", signal.SIGINT)) from None


def _student_unsaved(cell, ctx: RunContext, rundir: RunDir) -> bool:
    """A finished distill cell without a complete saved student, in a run that saves them.
    Cells keep no weights, so the only way to its student is to train it again."""
    from arkd_bench.train.export import STUDENT_DIR, missing_parts

    if not ctx.recipe.train.save_student or cell.kind != "distill":
        return False
    return bool(missing_parts(rundir.cell_dir(cell.id) / STUDENT_DIR))


def _run_one(cell, ctx: RunContext, rundir: RunDir, summary: RunSummary, progress, say) -> None:
    ctx.accelerator.wait_for_everyone()
    label = f"{cell.method} seed={cell.seed} [{cell.dataset}/{cell.teacher}->{cell.student or '-'}] {cell.id}"
    if rundir.is_done(cell.id):
        changed = changed_sources(cell, ctx, rundir)
        unsaved = not changed and _student_unsaved(cell, ctx, rundir)
        if not changed and not unsaved:
            summary.skipped.append(cell.id)
            if progress:
                progress.cell_done(label, skipped=True)
            return
        if changed:
            say(f"cell {label} was finished with other content than its sources hold now "
                f"({'; '.join(changed)}); running it again")
        else:
            say(f"cell {label} is finished but saved no student (train.save_student is on now): re-running to save "
                "its student (training is seeded by the cell, so it is the same student; its scores are rewritten)")
    rundir.write(cell.id, "cell.json", {**cell.summary(), "config": cell.config})
    rundir.set_status(cell.id, RUNNING)
    on_step = progress.start_cell(label, cell) if progress else None
    try:
        run_cell(cell, ctx, rundir, on_step=on_step)
    except Exception as exc:  # one cell's failure must not lose the grid
        message = describe_failure(exc, ctx.loaded.plugins)
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

"""What cells share within one run, each built once and keyed by content: the data
(arkd_bench.run.data), the files models are read from (arkd_bench.run.files), models before
and after their SFT stage, teacher sources, and data policies' built sequences."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from arkd_bench.recipe.matrix import content_hash
from arkd_bench.recipe.validate import LoadedRecipe
from arkd_bench.run.data import RunData
from arkd_bench.run.files import SourceFiles
from arkd_bench.run.placement import Placement
from arkd_bench.run.shared import Memo, named
from arkd_bench.teacher.choose import TeacherItems, TeacherSources


class Artifacts:
    """Models, teacher sources and built sequences, over the run's data and files."""

    def __init__(self, loaded: LoadedRecipe, cache, accelerator, say: Callable[[str], None]):
        self.loaded, self.recipe, self.cache = loaded, loaded.recipe, cache
        self.accelerator, self.say = accelerator, say
        self.memo = Memo()
        self.placement = Placement(accelerator.device)
        self.files = SourceFiles(loaded, cache, self.memo, say)
        self.data = RunData(loaded, cache, self.memo, self.files)
        self.teachers = TeacherSources(self.recipe.train, cache, accelerator.device, say)
        self.sequence_builds = 0  # data policies' built sequences (SeqKD generations), cache misses
        self.sequence_seconds = 0.0

    # -- models ------------------------------------------------------------------
    def build_model(self, spec, dataset: str, teacher: str, tokenizer):
        """A model before any SFT: pretrained, GGUF, derived from the cell's teacher, or from a config."""
        from arkd_bench.models.build import build_model

        folder = self.files.gguf_folder(spec)[0] if spec.gguf_file is not None else None
        source = self.teacher(dataset, teacher)[0] if spec.derive is not None else None
        return build_model(self.files.pinned(spec, self.files.source_identity(spec)), tokenizer,
                           folder=folder, teacher=source)

    def model_identity(self, spec, dataset: str, teacher: str) -> dict:
        """What a model's weights depend on beyond its spec: the GGUF file, its folder's files or
        hub commit, or the teacher it derives from (a scratch model's spec and seed say it all)."""
        if spec.gguf_file is not None:
            return {"gguf": self.files.gguf_folder(spec)[1]}
        if spec.derive is not None:
            return {"teacher": self.teacher_identity(dataset, teacher)}
        if spec.path is not None:
            return {"content": self.files.source_identity(spec).sha256}
        return {}

    def teacher_identity(self, dataset: str, teacher: str) -> str:
        spec, key = named(self.recipe.teachers, teacher), self.teacher(dataset, teacher)[1]
        return key or content_hash({"model": spec.model_dump(mode="json"),
                                    "tokenizer": self.data.tokenizer(dataset, teacher)[1],
                                    **self.model_identity(spec, dataset, teacher)})

    def _sft_model(self, kind: str, spec, dataset: str, teacher: str, seed: int, on_step=None):
        """A model after its SFT stage, from the cache or trained now. Returns (model, key, hash)."""
        from transformers import AutoModelForCausalLM

        from arkd_bench.rundir.provenance import hash_folder
        from arkd_bench.train.sft import supervised_finetune

        tokenizer, tok_key = self.data.tokenizer(dataset, teacher)
        data = self.data.splits(dataset, teacher)
        # the SFT stage trains every weight: a student's LoRA settings (distillation only) share its SFT model
        key = content_hash({"model": spec.model_dump(mode="json", exclude={"lora"}), "data": data.content_hash,
                            "tokenizer": tok_key,
                            "seed": seed, "max_length": self.recipe.train.max_length,
                            **self.model_identity(spec, dataset, teacher)})

        def build(folder: Path) -> None:
            self.say(f"{kind} {spec.name}: SFT for {spec.sft.steps} steps (cached as {key})")
            model = self.build_model(spec, dataset, teacher, tokenizer)
            model = supervised_finetune(model, tokenizer, data.train, spec.sft, seed=seed,
                                        max_length=self.recipe.train.max_length,
                                        accelerator=self.accelerator, on_step=on_step,
                                        gradient_checkpointing=self.recipe.train.gradient_checkpointing)
            self.accelerator.free_memory()
            model.save_pretrained(str(folder), safe_serialization=True)

        sources = self.files.sources(teacher, None if kind == "teachers" else spec.name)
        folder = self.cache.get_or_build(kind, key, build, sources=sources)
        attention = spec.attn_implementation  # a derived student's default is its teacher's
        if attention is None and spec.derive is not None:
            attention = named(self.recipe.teachers, teacher).attn_implementation
        model = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation=attention).eval()
        return model, key, self.memo(("hash", str(folder)), lambda: hash_folder(folder))

    def teacher(self, dataset: str, teacher: str, on_step=None):
        """(model, SFT key, weights' hash) of a teacher, on the device in eval mode; the key and
        hash are None without SFT."""
        spec = named(self.recipe.teachers, teacher)

        def build():
            if spec.sft is not None:
                model, key, weights = self._sft_model("teachers", spec, dataset, teacher, spec.init_seed, on_step)
            else:  # without SFT the teacher still depends on the dataset: its vocabulary may be trained on it
                model = self.build_model(spec, dataset, teacher, self.data.tokenizer(dataset, teacher)[0])
                key = weights = None
            return self.placement.teacher(model), key, weights

        return self.memo(("teacher", dataset, teacher), build)

    def student(self, dataset: str, teacher: str, student: str, seed: int, *, sft: bool, on_step=None):
        """The student a cell starts from: its SFT checkpoint, or a fresh init seeded by the cell."""
        spec = named(self.recipe.students, student)
        if sft and spec.sft is not None:
            return self._sft_model("students", spec, dataset, teacher, seed, on_step)[0]
        tokenizer, _ = self.data.tokenizer(dataset, teacher)
        return self.build_model(spec.model_copy(update={"init_seed": spec.init_seed + seed}), dataset, teacher, tokenizer)

    # -- teacher sources and training sequences -----------------------------------
    def teacher_source(self, dataset: str, teacher: str, items=None, items_key: str | None = None,
                       targets: str = "distribution"):
        """The teacher source for the training items (the dataset's, or a data policy's built
        ones under `items_key`), as arkd_bench.teacher.choose chooses it."""
        from arkd_bench.models.build import vocab_size

        model = self.teacher(dataset, teacher)[0]
        items = self.data.train_items(dataset, teacher) if items is None else items
        return self.teachers.source(TeacherItems(
            name=teacher, key=(dataset, teacher, *([items_key] if items_key else [])), model=model,
            vocab_size=vocab_size(model), pad_token_id=self.data.tokenizer(dataset, teacher)[0].pad_token_id,
            items=items, identity=self.teacher_identity(dataset, teacher), sources=self.files.sources(teacher)),
            targets=targets)

    def training_sequences(self, dataset: str, teacher: str, policy):
        """(items, teacher source, provenance) of a method's training data under its data
        `policy`: the dataset's items and the shared teacher source, or the items the policy
        builds (once per grid)."""
        if not policy.builds_sequences:
            return self.data.train_items(dataset, teacher), self.teacher_source(dataset, teacher, targets=policy.targets), {}
        items, info = self.built_sequences(dataset, teacher, policy)
        return items, self.teacher_source(dataset, teacher, items, info["key"], policy.targets), info

    def built_sequences(self, dataset: str, teacher: str, policy):
        """A policy's built items, from the disk cache or built now, keyed by everything they
        depend on: the policy and its settings, the teacher, and the encoded training items."""
        from arkd_bench.data_policy.session import SequenceSource
        from arkd_bench.data_policy.store import load_sequences, save_sequences
        from arkd_bench.teacher.items import items_hash

        model, tokenizer = self.teacher(dataset, teacher)[0], self.data.tokenizer(dataset, teacher)[0]
        max_length = self.recipe.train.max_length
        prompts = self.data.train_items(dataset, teacher)  # their hash covers data, tokenizer and max length
        teacher_identity = self.teacher_identity(dataset, teacher)
        key = content_hash({"policy": policy.name, "settings": policy.sequence_settings(),
                            "teacher": teacher_identity, "items": items_hash(prompts)})
        sources = self.files.sources(teacher)

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

        return self.memo(("sequences", key), load)

    def stats(self) -> dict:
        """cache.json: the artifact cache's hits and sources, and the teacher's and data policies' work."""
        teachers = self.teachers.stats()
        return {**self.cache.stats(), "teacher_passes": teachers["teacher_passes"],
                "sequence_builds": self.sequence_builds, "sequence_seconds": round(self.sequence_seconds, 3),
                "online_teacher_batches": teachers["online_teacher_batches"],
                "teacher_seconds": teachers["teacher_seconds"]}

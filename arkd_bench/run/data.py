"""The data cells share within a run: datasets, their splits in each teacher's prompt format,
tokenizers, encoded training and probe items, and the evaluation's metrics and settings."""
from __future__ import annotations

from pathlib import Path

from arkd_bench.recipe.matrix import content_hash
from arkd_bench.run.files import SourceFiles
from arkd_bench.run.shared import Memo, named


class RunData:
    """Datasets, tokenizers and encoded items, each built once per run."""

    def __init__(self, loaded, cache, memo: Memo, files: SourceFiles) -> None:
        self.loaded, self.recipe, self.cache, self.memo, self.files = loaded, loaded.recipe, cache, memo, files

    def data(self, name: str):
        spec = named(self.recipe.datasets, name)
        return self.memo(("data", name), lambda: self.loaded.plugins.create(
            "dataset", spec.source, **spec.options).load(self.loaded.base_dir))

    def splits(self, dataset: str, teacher: str):
        """The dataset as the teacher's cells see it: prompts in the teacher's prompt format."""
        from arkd_bench.data.prompt_format import apply_prompt_format

        spec = named(self.recipe.teachers, teacher)
        if spec.prompt_format == "raw":
            return self.data(dataset)
        return self.memo(("splits", dataset, teacher), lambda: apply_prompt_format(
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

    def tokenizer(self, dataset: str, teacher: str):
        """(tokenizer, key): a given path, the pretrained teacher's, or a BPE trained on the data.
        The key follows the tokenizer's content (its files' hashes, its hub commit, its GGUF file)."""
        from arkd_bench.models.tokenizer import load_tokenizer, train_bpe_tokenizer

        spec, teacher_spec = self.recipe.tokenizer, named(self.recipe.teachers, teacher)
        if not spec.path and teacher_spec.gguf_file is not None:
            folder, key = self.files.gguf_folder(teacher_spec)
            return self.memo(("tok", key), lambda: (load_tokenizer(folder), content_hash({"gguf": key})))
        if spec.path or teacher_spec.path:
            path = spec.path or teacher_spec.path
            source = self.files.tokenizer_source(teacher)
            # a hub repo loads the commit its identity resolved, else the recipe's revision;
            # a local folder has no revision
            revision = None
            if "repo" in source.files:
                commit = source.files.get("commit")
                revision = commit if commit != "unresolved" else (spec.revision if spec.path else teacher_spec.revision)
            key = content_hash({"tokenizer": source.sha256})
            return self.memo(("tok", key), lambda: (load_tokenizer(path, revision=revision), key))
        data = self.data(dataset)
        key = content_hash({"vocab_size": spec.vocab_size, "data": data.content_hash})

        def build(folder: Path) -> None:
            texts = [t for e in data.train for t in (e.prompt, e.references[0])]
            train_bpe_tokenizer(texts, vocab_size=spec.vocab_size).save_pretrained(str(folder))

        return self.memo(("tok", key), lambda: (load_tokenizer(self.cache.get_or_build("tokenizers", key, build)), key))

    def train_items(self, dataset: str, teacher: str):
        """Encoded training examples, shared by every cell on this (dataset, tokenizer)."""
        from arkd_bench.data.collate import TrainingDataset

        tokenizer, key = self.tokenizer(dataset, teacher)
        max_length = self.recipe.train.max_length
        return self.memo(("items", dataset, teacher, key),
                         lambda: TrainingDataset(self.splits(dataset, teacher).train, tokenizer, max_length).items)

    def probe_items(self, dataset: str, teacher: str):
        """The held-out probe batch (validation examples) that feedback rewards are measured on."""
        from arkd_bench.data.collate import TrainingDataset

        tokenizer, key = self.tokenizer(dataset, teacher)
        valid = self.splits(dataset, teacher).valid[: self.recipe.train.batch_size]
        return self.memo(("probe", dataset, teacher, key),
                         lambda: TrainingDataset(valid, tokenizer, self.recipe.train.max_length).items)

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
        return self.memo(("metrics",), lambda: [self.loaded.plugins.create("metric", m.name, **m.options)
                                                for m in self.recipe.eval.metrics])

    def generation_settings(self):
        from arkd_bench.evaluate.generate import GenerationSettings

        return GenerationSettings.model_validate(self.recipe.eval.generation)

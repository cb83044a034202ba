"""Helpers for plugin authors' tests: tiny real models, a plugin registered for one block,
real StepFeatures and Feedback built from random logits, and a tiny grid run in seconds.

    fake_features(...)       StepFeatures as the training loop computes them
    fake_feedback(...)       the Feedback `observe` receives after an optimizer step
    registered_plugin(...)   `arkd_bench.get_*` and the CLI see a plugin within a block
    run_tiny(...)            train and evaluate a tiny grid that uses the plugin
    tiny_tokenizer, tiny_gpt2
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SAMPLE_TEXTS = [
    "Return the absolute version of a path.",
    "Join two or more pathname components, inserting a separator as needed.",
    "Split a pathname into a pair of head and tail.",
    "Return the base name of a pathname.",
    "Test whether a path exists.",
    "Return a copy of the string with leading and trailing whitespace removed.",
    "Sort the list in place and return None.",
    "Return the number of items in a container.",
]


def tiny_tokenizer(texts=None, vocab_size: int = 320, add_bos: bool = False):
    """A byte-level BPE trained on a few sentences (no download). Its BOS is its EOS and is
    not added to encoded text, as GPT-2's; `add_bos=True` gives it a BOS token `<s>` of its
    own, put in front of every encoded text, as Llama's tokenizers do."""
    from arkd_bench.models.tokenizer import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer((texts or SAMPLE_TEXTS) * 4, vocab_size=vocab_size)
    if not add_bos:
        return tokenizer
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    backend = tokenizer.backend_tokenizer
    backend.add_special_tokens(["<s>"])
    bos = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                           special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=tokenizer.pad_token,
                                   eos_token=tokenizer.eos_token, bos_token="<s>")


def tiny_gpt2(tokenizer, n_layer: int = 1, n_embd: int = 32, n_head: int = 2, seed: int = 0):
    """A randomly initialised GPT-2 whose vocabulary matches `tokenizer`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_positions=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    return GPT2LMHeadModel(config).eval()


@contextmanager
def registered_plugin(plugin, name: str = "test-plugin", autoload: bool = False):
    """Within the block, `arkd_bench.get_*` and the CLI's defaults see `plugin`
    (a module or object with hookimpls) next to the builtins. Yields the Plugins."""
    from arkd_bench.plugins import manager as plugin_module

    loaded = plugin_module.load_plugins(autoload=autoload, extra=[(name, plugin)])
    plugin_module._override.append(loaded)
    try:
        yield loaded
    finally:
        plugin_module._override.remove(loaded)


def fake_features(terms=("fkl", "rkl"), *, batch: int = 2, length: int = 5, vocab: int = 40, seed: int = 0,
                  step: int = 0, total_steps: int = 10, masked: int = 0):
    """Real StepFeatures of random teacher/student logits [batch, length, vocab], computed by
    the same divergence pass the training loop runs. `terms` are divergence names, or a
    {label: name} mapping (labels are what a recipe's objective calls its terms). The last
    `masked` positions of every row are masked out, like prompt or padding tokens."""
    import torch

    from arkd_bench.divergences import divergence_pass
    from arkd_bench.plugins import default_plugins

    labels = dict(terms) if isinstance(terms, dict) else {name: name for name in terms}
    plugins = default_plugins()
    divergences = {label: plugins.create("divergence", name) for label, name in labels.items()}
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, length, vocab, generator=generator)
    teacher = 2.0 * torch.randn(batch, length, vocab, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.bool)
    if masked:
        mask[:, length - masked:] = False
    features = divergence_pass(student_logits=student, teacher_logits=teacher, mask=mask,
                               terms=divergences).features
    features.step, features.total_steps = step, total_steps
    return features


def fake_feedback(features=None, *, step: int | None = None, total_steps: int | None = None,
                  probe_before: dict[str, float] | None = None, probe_after: dict[str, float] | None = None,
                  rouge: float | None = None, **fields):
    """A Feedback as the loop hands it to `observe` after an optimizer step: `loss` and
    `term_losses` are the batch means of `features` (default `fake_features()`), weighted
    equally. Pass probe criteria (e.g. {"fkl": 1.2}) to feed a strategy that requests
    "probe", `rouge` for one that requests "rouge_probe", and any other Feedback field."""
    from arkd_bench.weighting import Feedback

    features = fake_features() if features is None else features
    term_losses = {label: features.batch_mean(value) for label, value in features.terms.items()}
    fields.setdefault("loss", sum(term_losses.values()) / max(len(term_losses), 1))
    fields.setdefault("term_losses", term_losses)
    return Feedback(step=features.step if step is None else step,
                    total_steps=features.total_steps if total_steps is None else total_steps,
                    features=features, probe_before=probe_before, probe_after=probe_after,
                    rouge_probe=None if rouge is None else (lambda: float(rouge)), **fields)


# A grid that trains and evaluates in under a minute on a CPU, on the embedded `stdlib` data.
TINY_RECIPE = {
    "name": "tiny",
    "seeds": [0],
    "tokenizer": {"vocab_size": 320},
    "teachers": [{"name": "teacher", "scratch": {"architecture": "gpt2", "config": {
        "n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 128}}, "sft": {"steps": 4, "batch_size": 8}}],
    "students": [{"name": "student", "scratch": {"architecture": "gpt2", "config": {
        "n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 128}}}],
    "datasets": [{"name": "stdlib", "source": "stdlib",
                  "options": {"valid_size": 8, "test_size": 6, "max_train": 64}}],
    "methods": [{"name": "fkl", "objective": ["fkl"]}],
    "train": {"steps": 3, "batch_size": 8, "max_length": 64, "log_every": 1},
    "eval": {"metrics": ["rougeL"], "generation": {"max_new_tokens": 8, "batch_size": 8}, "baselines": []},
}


@dataclass
class TinyRun:
    """What `run_tiny` produced: the run folder, its results.json and each cell's training log."""

    out: Path
    results: dict
    logs: dict  # method name -> train_log.jsonl records of its (first) cell

    def metric(self, method: str, metric: str) -> float:
        row = next(r for r in self.results["leaderboard"] if r["method"] == method)
        return row["metrics"][metric]["mean"]


def run_tiny(directory, *plugin_modules, methods=None, metrics=None, datasets=None, **changes) -> TinyRun:
    """Run TINY_RECIPE (under a minute on a CPU) in `directory` with `plugin_modules` (modules
    or objects with hookimpls) registered next to the builtins; `methods`, `metrics`, `datasets` and
    any other top-level recipe key replace the recipe's (`plugins=[...]` lists plugin files
    relative to `directory`, as a recipe does). E.g. `run_tiny(tmp_path, my_plugin,
    methods=[{"name": "mine", "objective": ["fkl", "rkl"], "weighting": {"name": "mine"}}])`.
    A failed cell raises with its error."""
    import yaml

    from arkd_bench.plugins import load_plugins
    from arkd_bench.recipe.validate import load_recipe
    from arkd_bench.run.grid import run_recipe

    recipe = {**TINY_RECIPE, **changes}
    recipe["methods"] = methods or recipe["methods"]
    recipe["datasets"] = datasets or recipe["datasets"]
    if metrics is not None:
        recipe["eval"] = {**recipe["eval"], "metrics": list(metrics)}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    extra = [(getattr(plugin, "__name__", f"test-plugin-{i}"), plugin) for i, plugin in enumerate(plugin_modules)]
    files = [directory / f for f in recipe.get("plugins") or []]
    loaded = load_recipe(path, plugins=load_plugins(files, autoload=False, extra=extra))
    summary = run_recipe(loaded, directory / "out", cache_dir=directory / "cache", say=lambda message: None)
    if summary.failed:
        raise RuntimeError(f"cells failed: {summary.failed}")
    results = json.loads((directory / "out" / "results.json").read_text(encoding="utf-8"))
    logs = {}
    for cell in results["cells"]:
        log = directory / "out" / "cells" / cell["id"] / "train_log.jsonl"
        if cell["kind"] == "distill" and cell["method"] not in logs and log.is_file():
            logs[cell["method"]] = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return TinyRun(out=directory / "out", results=results, logs=logs)

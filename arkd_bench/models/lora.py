"""LoRA students (`students[].lora`): peft's low-rank adapters put on a student before
distillation, so only they train, and merged back into a plain transformers model to save it.

The adapted model (peft's PeftModelForCausalLM) is what trains and what a cell evaluates; its
forward, generation config and embeddings are the base model's. The saved student is a merged
copy (`merged_copy`), so `from_pretrained` loads it without peft."""
from __future__ import annotations

from typing import Any

from arkd_bench.recipe.lora import INSTALL


class LoraError(ValueError):
    """A LoRA setting peft cannot apply; the message starts with the recipe field it comes from."""


def linear_module_names(model) -> list[str]:
    """The last name part of every linear (or GPT-2 Conv1D) module but the LM head: what
    `target_modules` can name."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not head})


def with_lora(model, spec, where: str) -> Any:
    """`model` with LoRA adapters on its `spec.target_modules`, every other weight frozen.
    `where` is the recipe field of `spec` (e.g. students[0].lora); peft's errors are raised
    as LoraError located there, with the module names that could be targeted."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # validate says so first (recipe.lora.lora_problems)
        raise LoraError(f"{where}: LoRA students need peft, which cannot be imported ({exc}): {INSTALL}") from exc
    names = linear_module_names(model)
    try:
        config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, bias="none",
                            target_modules=spec.target_modules, task_type="CAUSAL_LM")
        return get_peft_model(model, config)
    except (ValueError, TypeError, KeyError) as exc:
        raise LoraError(f"{where}.target_modules: {spec.target_modules!r}: peft says: {exc} "
                        f"(this model's linear layers: {', '.join(names)}; or `all-linear`)") from exc


def lora_record(model, spec) -> dict[str, Any]:
    """What a cell's provenance says of its LoRA student: the settings, the trainable and all
    parameters, and peft's version."""
    from importlib import metadata

    trainable, total = model.get_nb_trainable_parameters()
    return {**spec.model_dump(mode="json"), "trainable_parameters": trainable, "parameters": total,
            "peft": metadata.version("peft")}


def is_lora(model) -> bool:
    return hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")


def merged_copy(model) -> Any:
    """A plain transformers model with the adapters added into its weights; `model` keeps its
    adapters (it is still evaluated as it trained). The copy costs one more model's memory."""
    import copy

    return copy.deepcopy(model).merge_and_unload()

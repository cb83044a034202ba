"""`students[].lora`: distil into low-rank adapters (LoRA, through peft) instead of every weight.

The schema part and its checks against the machine live here; the models' side is in
arkd_bench/models/lora.py. peft is an optional extra (`pip install 'arkd-bench[lora]'`), so
validate finds it without importing it (importing peft imports torch)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from arkd_bench.recipe.loader import Problem

INSTALL = "`pip install 'arkd-bench[lora]'` (or `pip install peft`)"


class LoraSpec(BaseModel):
    """Low-rank adapters on the student's linear layers; only they train during distillation
    (the SFT stage, if any, trains every weight first). The saved student has them merged in."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1, description="rank of each adapter")
    alpha: float = Field(16, gt=0, description="scaling numerator: an adapter's update is scaled by alpha / r")
    target_modules: list[str] | str = Field(
        "all-linear", min_length=1, description="names (suffixes) of the modules that get adapters, e.g. "
        "[q_proj, v_proj] for Llama, [c_attn] for GPT-2; `all-linear`: every linear layer but the LM head")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on each adapter's input during training")


def peft_missing() -> bool:
    """peft cannot be imported (found without importing it, which would import torch)."""
    import importlib.util

    try:
        return importlib.util.find_spec("peft") is None
    except ValueError:  # a module object without a spec
        return False


def lora_problems(recipe) -> list[Problem]:
    """`lora` only on students, only where peft is installed, and not with train.fused_head."""
    problems = [Problem(("teachers", i, "lora"), "a teacher is never trained by distillation: `lora` "
                        "belongs on a student") for i, t in enumerate(recipe.teachers) if t.lora is not None]
    users = [i for i, s in enumerate(recipe.students) if s.lora is not None]
    if users and peft_missing():
        problems += [Problem(("students", i, "lora"), f"LoRA students need peft, which is not installed: "
                             f"{INSTALL}; or remove `lora` to distil every weight") for i in users]
    if users and recipe.train.fused_head:
        lora_students = ", ".join(f"students[{i}]" for i in users)
        problems.append(Problem(("train", "fused_head"), f"fused_head reads the hidden states of a plain "
                                f"transformers model; LoRA students ({lora_students}) are peft models: "
                                "set fused_head: false"))
    return problems

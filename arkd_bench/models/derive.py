"""Students derived from their teacher: depth pruning (keep a listed subset of the decoder
layers, as DistilBERT and Minitron do), an optionally narrower MLP, or a fresh init of the
same shape with the teacher's vocabulary.

The student is built from the teacher's config with the new shape (so every module is
numbered and sized as if it had been made that way, and saves and reloads like any model),
then the kept weights are copied in by name.
"""
from __future__ import annotations

import copy
import re

from arkd_bench.recipe.schema import DeriveSpec

# Llama-family MLP projections: rows of gate/up and columns of down are the MLP's channels.
MLP_ROWS = ("gate_proj", "up_proj")
MLP_COLUMNS = ("down_proj",)


class DeriveError(ValueError):
    """A derivation the teacher's architecture does not allow; the message says what would."""


def layer_list_name(model) -> str:
    """Qualified name of the decoder's layer list (`model.layers` for Llama, `transformer.h` for GPT-2)."""
    n_layers = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if type(module).__name__ == "ModuleList" and len(module) == n_layers and name.count(".") <= 1:
            return name
    raise DeriveError(f"{type(model).__name__}: found no list of {n_layers} decoder layers to prune")


def derived_config(teacher, spec: DeriveSpec):
    config = copy.deepcopy(teacher.config)
    n_layers = config.num_hidden_layers
    layers = list(range(n_layers)) if spec.layers is None else list(spec.layers)
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad or len(set(layers)) != len(layers):
        raise DeriveError(f"derive.layers: {layers} must be distinct indices in 0..{n_layers - 1} "
                          f"(the teacher has {n_layers} layers)")
    config.num_hidden_layers = len(layers)
    if getattr(config, "layer_types", None) is not None:  # per-layer attention kinds follow their layer
        config.layer_types = [config.layer_types[i] for i in layers]
    if spec.intermediate_size is not None:
        width = getattr(config, "intermediate_size", None)
        if width is None:
            raise DeriveError(f"derive.intermediate_size: {config.model_type} has no `intermediate_size`; "
                              "narrowing supports Llama-style MLPs (gate_proj, up_proj, down_proj)")
        if spec.intermediate_size > width:
            raise DeriveError(f"derive.intermediate_size: {spec.intermediate_size} exceeds the teacher's {width}")
        config.intermediate_size = spec.intermediate_size
    return config, layers


def derive_student(teacher, spec: DeriveSpec, seed: int = 0, attn_implementation: str | None = None):
    """A new model shaped by `spec`, with the teacher's kept weights copied (or freshly initialised);
    its attention implementation is the teacher's unless `attn_implementation` is given."""
    import torch
    from transformers import AutoModelForCausalLM

    config, layers = derived_config(teacher, spec)
    torch.manual_seed(seed)
    attention = attn_implementation or teacher.config._attn_implementation
    student = AutoModelForCausalLM.from_config(config, attn_implementation=attention).to(next(teacher.parameters()).dtype)
    if spec.init == "fresh":
        return student
    prefix = layer_list_name(teacher)
    keep = {old: new for new, old in enumerate(layers)}
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    source = {}
    for key, value in teacher.state_dict().items():
        match = pattern.match(key)
        if match is None:
            source[key] = value
        elif int(match.group(1)) in keep:
            source[f"{prefix}.{keep[int(match.group(1))]}.{match.group(2)}"] = value
    if spec.intermediate_size is not None:
        source = _narrow_mlps(source, prefix, len(layers), spec.intermediate_size)
    missing, unexpected = student.load_state_dict(source, strict=False)
    if missing or unexpected:
        raise DeriveError(f"derived student does not match the teacher's weights: missing {missing[:4]}, "
                          f"unexpected {unexpected[:4]}")
    return student


def _narrow_mlps(state: dict, prefix: str, n_layers: int, width: int) -> dict:
    """Keep, per layer, the `width` MLP channels whose weights have the largest norm
    (product of the gate, up and down norms of the channel: a data-free importance)."""
    import torch

    state = dict(state)
    for layer in range(n_layers):
        keys = {name: f"{prefix}.{layer}.mlp.{name}.weight" for name in MLP_ROWS + MLP_COLUMNS}
        if not all(k in state for k in keys.values()):
            raise DeriveError("derive.intermediate_size supports Llama-style MLPs (gate_proj, up_proj, "
                              f"down_proj); layer {layer} has none")
        score = torch.ones(state[keys["down_proj"]].shape[1])
        for name in MLP_ROWS:
            score = score * state[keys[name]].norm(dim=1)
        score = score * state[keys["down_proj"]].norm(dim=0)
        channels = score.topk(width).indices.sort().values
        for name in MLP_ROWS:
            state[keys[name]] = state[keys[name]][channels].clone()
            bias = f"{prefix}.{layer}.mlp.{name}.bias"
            if bias in state:
                state[bias] = state[bias][channels].clone()
        state[keys["down_proj"]] = state[keys["down_proj"]][:, channels].clone()
    return state

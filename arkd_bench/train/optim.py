"""Optimizer, schedule and batches shared by the SFT stage and the distillation loop."""
from __future__ import annotations

import math
from collections.abc import Iterator


class OptimizerUnavailable(ImportError):
    """`train.optimizer` names an optimizer whose package is not installed."""


def adamw_class(name: str = "adamw"):
    """The optimizer class `train.optimizer` names."""
    import torch

    if name == "adamw":
        return torch.optim.AdamW
    try:
        import bitsandbytes
    except ImportError as exc:  # validate says so first (recipe.preflight.bitsandbytes_missing)
        raise OptimizerUnavailable(f"train.optimizer: adamw_8bit needs bitsandbytes, which cannot be imported "
                                   f"({exc}): `pip install bitsandbytes`, or use adamw") from exc
    return bitsandbytes.optim.AdamW8bit


def adamw_with_schedule(model, lr: float, weight_decay: float, warmup_steps: int, total_steps: int,
                        optimizer: str = "adamw"):
    """AdamW (`optimizer`: adamw or adamw_8bit) with linear warm-up then cosine decay to 10% of `lr`."""
    import torch

    optimizer = adamw_class(optimizer)(model.parameters(), lr=lr, weight_decay=weight_decay)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def torch_optimizer(optimizer):
    """The torch optimizer inside accelerate's prepared one (or `optimizer` itself)."""
    return getattr(optimizer, "optimizer", optimizer)


def enable_gradient_checkpointing(model) -> None:
    """Recompute each layer's activations in the backward (`train.gradient_checkpointing`).
    Non-reentrant checkpointing: it needs no input that requires grad and restores the RNG
    state, so the gradients are the ones the model computes without it."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers' newer name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def training_loader(dataset, batch_size: int, seed: int):
    """A shuffling DataLoader with a seeded generator, so runs repeat exactly.

    `dataset` provides `collate` (TrainingDataset, IndexedDataset)."""
    import torch
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator,
                      collate_fn=dataset.collate)


def forever(loader) -> Iterator:
    """Cycle through a loader epoch after epoch (each epoch reshuffled)."""
    while True:
        yield from loader

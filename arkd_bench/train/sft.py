"""Supervised fine-tuning on responses: the teacher's SFT stage and the SFT-only student."""
from __future__ import annotations

from collections.abc import Callable

from arkd_bench.recipe.schema import SFTSpec
from arkd_bench.train.optim import adamw_with_schedule, enable_gradient_checkpointing, forever, training_loader


class TrainingDiverged(Exception):
    """A loss became NaN or infinite."""


def supervised_finetune(
    model,
    tokenizer,
    examples,
    spec: SFTSpec,
    *,
    seed: int,
    max_length: int,
    accelerator,
    on_step: Callable[[int, float], None] | None = None,
    gradient_checkpointing: bool = False,
):
    """Train `model` with cross-entropy on the response tokens; returns the unwrapped model."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    from arkd_bench.data.collate import IGNORE_INDEX, TrainingDataset, shift_for_next_token

    loader = training_loader(TrainingDataset(examples, tokenizer, max_length), spec.batch_size, seed)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    optimizer, scheduler = adamw_with_schedule(model, spec.lr, spec.weight_decay, spec.warmup_steps, spec.steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    model.train()
    batches = forever(loader)
    for step in range(spec.steps):
        batch = next(batches)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, labels = shift_for_next_token(logits, batch["labels"])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"SFT step {step}: cross-entropy is {loss.item()}")
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(step, loss.item())
    model.eval()
    return accelerator.unwrap_model(model)

"""Teacher-forced passes shared by the model metrics (no generation involved).

A (prompt, response) pair is encoded exactly as training encodes it
(`encode_prompt` + `encode_response`, joined by `join_ids`), so the tokens a
metric scores are the tokens a student was trained on, eos included.

`shared_passes()` lets several metrics reuse one forward pass: inside the block,
`memo(key, build)` computes each key once. evaluate_model opens it around its
model metrics, so e.g. tf_fkl and tf_rkl cost one teacher and one student pass
between them. Outside the block nothing is kept, so a model trained further
between two calls is never scored from stale results.

Torch is imported inside the functions: metric modules stay cheap to import.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_memo: list[dict] = []  # a stack: the innermost open `shared_passes()` block


@contextmanager
def shared_passes() -> Iterator[None]:
    """Within the block, `memo` reuses results by key (keys hold object ids, valid while
    the caller keeps those objects alive, which it does for the block's duration)."""
    _memo.append({})
    try:
        yield
    finally:
        _memo.pop()


def memo(key: tuple, build: Callable[[], Any]) -> Any:
    if not _memo:
        return build()
    store = _memo[-1]
    if key not in store:
        store[key] = build()
    return store[key]


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> list[dict[str, list[int]]]:
    """Training encodings (input_ids, labels with the prompt masked) of (prompt, response) pairs."""
    from arkd_bench.data.collate import encode_prompt, encode_response, join_ids

    bos = tokenizer.bos_token_id
    return [join_ids(encode_prompt(tokenizer, p), encode_response(tokenizer, r), max_length, bos_token_id=bos)
            for p, r in pairs]


def length_limit(model, max_length: int) -> int:
    """max_length, lowered to the model's number of positions."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return min(max_length, positions) if positions else max_length


def pad_id(tokenizer) -> int:
    return tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id


def batches(items: list[dict], batch_size: int, pad: int):
    """(start index, collated tensors) for consecutive slices of `items`."""
    from arkd_bench.data.collate import collate_for_training

    for start in range(0, len(items), batch_size):
        yield start, collate_for_training(items[start:start + batch_size], pad)


def next_token_logits(model, batch: dict) -> tuple[Any, Any, Any]:
    """(logits predicting positions 1.., their targets, response mask), float32, no grad.

    The mask marks the response tokens (answer + eos); prompt and padding are False.
    """
    import torch

    from arkd_bench.data.collate import IGNORE_INDEX

    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits
    targets = batch["labels"][:, 1:].to(device)
    return logits[:, :-1].float(), targets, targets != IGNORE_INDEX


@contextmanager
def eval_mode(*models) -> Iterator[None]:
    """Models in eval mode (no dropout) for the block, then restored."""
    states = [(m, m.training) for m in models if m is not None]
    for m, _ in states:
        m.eval()
    try:
        yield
    finally:
        for m, training in states:
            m.train(training)

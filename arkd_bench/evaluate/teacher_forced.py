"""Teacher-forced passes shared by the model metrics (no generation involved).

A (prompt, response) pair is encoded exactly as training encodes it
(`encode_prompt` + `encode_response`, joined by `join_ids`), so the tokens a
metric scores are the tokens a student was trained on, eos included.

`shared_passes()` lets several metrics reuse one forward pass: inside the block,
`memo(key, build)` computes each key once. evaluate_model opens it around its
model metrics, so e.g. tf_fkl and tf_rkl cost one teacher and one student pass
between them. Outside the block nothing is kept, so a model trained further
between two calls is never scored from stale results.

`frozen_models()` is the longer scope for models that never change while it is open (a run's
teachers): `frozen(objects, params, build)` keeps a result across every cell of the grid, so
the teacher's teacher-forced logits on the test set are computed once per run, not once per
cell. It holds the keyed objects themselves (never bare ids, which a freed object's successor
could reuse) and keeps nothing larger than its byte budget: a bigger result is rebuilt on use.

Torch is imported inside the functions: metric modules stay cheap to import.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_memo: list[dict] = []  # a stack: the innermost open `shared_passes()` block
_frozen: list[_FrozenStore] = []  # a stack: the innermost open `frozen_models()` block
FROZEN_BYTES = 1 << 30  # what `frozen_models()` may keep, by default


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


class _FrozenStore:
    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0
        self.entries: list[tuple[tuple, tuple, Any]] = []  # (objects, params, result)

    def get(self, objects: tuple, params: tuple, build: Callable[[], Any], size: Callable[[Any], int]) -> Any:
        for held, held_params, result in self.entries:
            if held_params == params and len(held) == len(objects) and all(a is b for a, b in zip(held, objects)):
                return result
        result = build()
        nbytes = size(result)
        if self.used + nbytes <= self.budget:
            self.entries.append((objects, params, result))
            self.used += nbytes
        return result


@contextmanager
def frozen_models(budget: int = FROZEN_BYTES) -> Iterator[None]:
    """Within the block, `frozen` keeps results about models that do not change (up to `budget`
    bytes); the caller promises that no model passed to `frozen` is trained inside it."""
    _frozen.append(_FrozenStore(budget))
    try:
        yield
    finally:
        _frozen.pop()


def frozen(objects: tuple, params: tuple, build: Callable[[], Any], size: Callable[[Any], int]) -> Any:
    """`build()`, kept for the innermost `frozen_models()` block under the identity of `objects`
    and the value of `params`; outside any block, built every time."""
    if not _frozen:
        return build()
    return _frozen[-1].get(objects, params, build, size)


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

    from arkd_bench.data.collate import IGNORE_INDEX, shift_for_next_token

    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits
    logits, targets = shift_for_next_token(logits, batch["labels"].to(device))
    return logits.float(), targets, targets != IGNORE_INDEX

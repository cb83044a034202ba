"""Tokenization and batching for training with a response-only loss mask.

Prompt and response are encoded separately and their ids concatenated, so the
prompt ids seen in training are exactly `encode_prompt(tokenizer, prompt)`,
the ids generation starts from; encoding the joined text could merge tokens
across the boundary and give the model a prompt it never sees at test time.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from arkd_bench.data.base import Example

IGNORE_INDEX = -100  # label value that torch/transformers cross-entropy skips


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Prompt ids as generation sees them (the tokenizer's own special tokens, e.g. BOS, included)."""
    return list(tokenizer(prompt)["input_ids"])


def encode_response(tokenizer, response: str) -> list[int]:
    """Response ids followed by eos, without special tokens of their own."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token; training needs one to mark where a response ends")
    return list(tokenizer(response, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]


def min_prompt_tokens(max_length: int) -> int:
    """Prompt tokens (after BOS) that truncation always keeps: a quarter of max_length.

    Distillation scores the response under the teacher's distribution given the prompt;
    a response that pushed its prompt down to a token or two would be distilled from a
    teacher answering a question it was never asked. A quarter keeps a few sentences of
    instruction at the usual lengths (64 tokens of 256) while the response, where the loss
    is, keeps three quarters of the budget.
    """
    return max(1, max_length // 4)


def join_ids(prompt_ids: Sequence[int], target_ids: Sequence[int], max_length: int,
             bos_token_id: int | None = None, min_prompt: int | None = None) -> dict[str, list[int]]:
    """Join prompt ids and target ids (response + eos) within max_length tokens.

    Truncation, when prompt + target do not fit:
    - a prompt that starts with `bos_token_id` keeps that BOS in front (the model was
      trained and is evaluated with it there); the rest of the prompt is cut from the left;
    - the prompt keeps at least `min_prompt` tokens after BOS (default
      `min_prompt_tokens(max_length)`), or all of them if it is shorter; the response
      cannot push those out;
    - within that, the response is kept whole if it fits; otherwise it is cut on the
      right and loses its eos, so the model is not taught to stop mid-answer.
    A max_length that cannot hold BOS + min_prompt + one response token is an error.
    """
    prompt_ids, target_ids = list(prompt_ids), list(target_ids)
    if not prompt_ids:
        raise ValueError("empty prompt: nothing would predict the first response token")
    min_prompt = min_prompt_tokens(max_length) if min_prompt is None else min_prompt
    if min_prompt < 1:
        raise ValueError(f"min_prompt must be at least 1, got {min_prompt}")
    head = prompt_ids[:1] if bos_token_id is not None and prompt_ids[0] == bos_token_id else []
    body = prompt_ids[len(head):]
    if len(head) + min_prompt + 1 > max_length:
        need = " + ".join(["1 BOS"] * bool(head) + [f"{min_prompt} prompt", "1 response"])
        raise ValueError(f"max_length {max_length} is too small: truncation keeps {need} tokens "
                         f"({len(head) + min_prompt + 1}); raise max_length to at least that")
    reserved = min(len(body), min_prompt)
    target_ids = target_ids[: max_length - len(head) - reserved]
    room = max_length - len(head) - len(target_ids)
    body = body[len(body) - room:] if len(body) > room else body
    prompt_ids = head + body
    input_ids = prompt_ids + target_ids
    return {
        "input_ids": input_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + target_ids,
        "attention_mask": [1] * len(input_ids),
    }


def prompt_for_continuation(prompt_ids: Sequence[int], max_length: int, max_new_tokens: int,
                            bos_token_id: int | None = None, min_prompt: int | None = None) -> list[int]:
    """The prompt a model should continue when its continuation (at most `max_new_tokens`) is
    then joined to it by `join_ids(prompt, continuation, max_length, ...)`: cut from the left
    beforehand, as `join_ids` would cut it, so that `join_ids` keeps it whole and the sequence
    trained on has exactly the prompt the continuation was generated from.

    A leading BOS stays in front; the rest keeps its last `max_length - max_new_tokens` tokens
    in all, but never fewer than `join_ids` reserves for a prompt (`min_prompt` after BOS, or
    all of a shorter prompt): there `join_ids` cuts the continuation instead.
    """
    prompt_ids = list(prompt_ids)
    min_prompt = min_prompt_tokens(max_length) if min_prompt is None else min_prompt
    head = prompt_ids[:1] if prompt_ids and bos_token_id is not None and prompt_ids[0] == bos_token_id else []
    body = prompt_ids[len(head):]
    keep = max(max_length - max_new_tokens - len(head), min(len(body), min_prompt))
    return head + (body[len(body) - keep:] if len(body) > keep else body)


def prompt_ids_of(items: Sequence[dict]) -> list[list[int]]:
    """The prompt of each item: its ids before the first scored label."""
    prompts = []
    for item in items:
        labels = item["labels"]
        start = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
        prompts.append(list(item["input_ids"][:start]))
    return prompts


def shift_for_next_token(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align next-token logits with their targets: position t predicts token t+1
    (`logits` ``[batch, length, V]`` -> ``[batch, length - 1, V]``, labels likewise; views)."""
    return logits[:, :-1, :], labels[:, 1:]


def encode_for_training(tokenizer, prompt: str, response: str, max_length: int) -> dict[str, list[int]]:
    """input_ids, labels (IGNORE_INDEX on the prompt) and attention_mask for one example."""
    return join_ids(encode_prompt(tokenizer, prompt), encode_response(tokenizer, response), max_length,
                    bos_token_id=tokenizer.bos_token_id)


def collate_for_training(batch: Sequence[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad encoded examples into tensors; padding gets IGNORE_INDEX labels and mask 0."""
    width = max(len(item["input_ids"]) for item in batch)
    out = {"input_ids": [], "labels": [], "attention_mask": []}
    for item in batch:
        pad = width - len(item["input_ids"])
        out["input_ids"].append(list(item["input_ids"]) + [pad_token_id] * pad)
        out["labels"].append(list(item["labels"]) + [IGNORE_INDEX] * pad)
        out["attention_mask"].append(list(item["attention_mask"]) + [0] * pad)
    return {key: torch.tensor(rows, dtype=torch.long) for key, rows in out.items()}


class TrainingDataset(torch.utils.data.Dataset):
    """Examples encoded once, up front, for training on their first reference.

    Use `collate` as the DataLoader's collate_fn.
    """

    def __init__(self, examples: Sequence[Example], tokenizer, max_length: int) -> None:
        self.examples = list(examples)
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token; training needs one to mark where a response ends")
        pad = tokenizer.pad_token_id
        self.pad_token_id = tokenizer.eos_token_id if pad is None else pad
        # Batch calls for speed; same ids as encode_prompt/encode_response one by one.
        prompts = tokenizer([ex.prompt for ex in self.examples])["input_ids"] if self.examples else []
        responses = (
            tokenizer([ex.response for ex in self.examples], add_special_tokens=False)["input_ids"]
            if self.examples else []
        )
        eos = [tokenizer.eos_token_id]
        bos = tokenizer.bos_token_id
        self.items = [join_ids(p, list(r) + eos, max_length, bos_token_id=bos) for p, r in zip(prompts, responses)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]

    def collate(self, batch: Sequence[dict]) -> dict[str, torch.Tensor]:
        return collate_for_training(batch, self.pad_token_id)

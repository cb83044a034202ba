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


def join_ids(prompt_ids: Sequence[int], target_ids: Sequence[int], max_length: int) -> dict[str, list[int]]:
    """Join prompt ids and target ids (response + eos) within max_length tokens.

    Truncation keeps the response: the prompt loses tokens from the left first,
    down to its last token (something must predict the first response token).
    Only a response that still does not fit is cut on the right, and then loses
    its eos, so the model is not taught to stop mid-answer.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    prompt_ids, target_ids = list(prompt_ids), list(target_ids)
    if not prompt_ids:
        raise ValueError("empty prompt: nothing would predict the first response token")
    target_ids = target_ids[: max_length - 1]
    prompt_ids = prompt_ids[-(max_length - len(target_ids)):]
    input_ids = prompt_ids + target_ids
    return {
        "input_ids": input_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + target_ids,
        "attention_mask": [1] * len(input_ids),
    }


def encode_for_training(tokenizer, prompt: str, response: str, max_length: int) -> dict[str, list[int]]:
    """input_ids, labels (IGNORE_INDEX on the prompt) and attention_mask for one example."""
    return join_ids(encode_prompt(tokenizer, prompt), encode_response(tokenizer, response), max_length)


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
        self.items = [join_ids(p, list(r) + eos, max_length) for p, r in zip(prompts, responses)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]

    def collate(self, batch: Sequence[dict]) -> dict[str, torch.Tensor]:
        return collate_for_training(batch, self.pad_token_id)

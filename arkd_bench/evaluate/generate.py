"""Batched generation of students' answers for evaluation.

`generate` pads on the left, keeps the last `max_prompt_length` prompt tokens,
decodes with the KV cache through `model.generate`, stops each row at EOS and
returns only the continuation text. Position ids with left padding: transformers
(5.x) derives them from the attention mask (cumulative sum - 1, pads at 0) when
none are passed, so a padded row sees the same positions as when run alone; a
test checks batched greedy output against one-at-a-time output token for token.

What is guaranteed:
- Greedy (`do_sample=False`): no randomness; seeds are ignored, so evaluate once
  (`GenerationSettings.effective_seeds()` returns `[None]`).
- Sampling: every example draws from its own `torch.Generator`, seeded from
  (seed, index of the prompt in `prompts`, offset by `first_index`). The sample of example i therefore
  depends on the seed, the prompt, i and the model, not on `batch_size`, the
  other prompts or their order in a batch. The only caveat is floating point:
  padded batches change matmul shapes, which can move logits by ~1e-6 and, very
  rarely, flip a near-tie. `seed=None` takes the generators' seeds from torch's
  global RNG (reproducible under `torch.manual_seed`). The generators are the model's
  device's (the CPU's where the device has none), so a sample repeats on the same kind
  of device, not across kinds.

The tokenizer is not modified (padding is done here, not by its padding_side),
and the model is put in eval mode for the call and restored afterwards.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class GenerationSettings(BaseModel):
    """Decoding settings, recorded with every result.

    Defaults follow the MiniLLM protocol when `do_sample=True`: top-p 1.0,
    top-k 0 (off), temperature 1.0, seeds 10..50. The default `do_sample=False`
    is greedy decoding.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    do_sample: bool = False
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 disables top-k filtering")
    temperature: float = Field(1.0, gt=0.0)
    max_new_tokens: int = Field(64, ge=1)
    max_prompt_length: int = Field(256, ge=1, description="prompts keep their last tokens")
    no_repeat_ngram_size: int = Field(0, ge=0, description="0 disables the constraint")
    batch_size: int = Field(32, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [10, 20, 30, 40, 50], min_length=1)

    @field_validator("seeds")
    @classmethod
    def _unique_non_negative(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds):
            raise ValueError("seeds must be >= 0")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds repeat: {seeds}")
        return seeds

    def effective_seeds(self) -> list[int | None]:
        """Seeds to evaluate: all of them when sampling, a single `None` when greedy."""
        return list(self.seeds) if self.do_sample else [None]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    settings: GenerationSettings | None = None,
    seed: int | None = None,
    progress: Callable[[int], object] | None = None,
    first_index: int = 0,
) -> list[str]:
    """Continue each prompt; returns the stripped continuation text, in prompt order.

    `progress`, when given, is called with the number of prompts finished after
    each batch (tqdm's `bar.update` fits). `first_index` is the index of `prompts[0]` in a
    larger list that was split (evaluation shared by processes): sampled rows are seeded by
    their index in that list, so a split changes no sample.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string")
    if not prompts:
        return []
    eos_ids = _eos_ids(model, tokenizer)
    tokens = generate_ids(model, tokenizer, _encode(tokenizer, prompts), settings, seed, progress, first_index)
    return [_decode_until_eos(tokenizer, row, eos_ids) for row in tokens]


def generate_ids(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    settings: GenerationSettings | None = None,
    seed: int | None = None,
    progress: Callable[[int], object] | None = None,
    first_index: int = 0,
) -> list[list[int]]:
    """Continue each encoded prompt; returns the new token ids of each, in prompt order,
    up to and including the first EOS (a row without EOS ran out of `max_new_tokens`).

    The same batching, truncation and per-row sampling as `generate`, which decodes these;
    training on the model's own samples (on-policy data) uses the ids directly, so what
    it trains on is exactly what the model drew, not a re-tokenization of its text.
    """
    import torch

    from arkd_bench.evaluate._sampling import RowSampler, build_generation_config, row_seeds
    from arkd_bench.train.modes import eval_mode
    from arkd_bench.train.sharding import generate_options

    settings = settings or GenerationSettings()
    if not prompt_ids:
        return []
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token")
    eos_ids = _eos_ids(model, tokenizer)
    limit = _prompt_limit(model, settings)
    encoded = [_truncate_left(list(ids), limit, tokenizer) for ids in prompt_ids]
    seeds = row_seeds(seed, len(encoded), first_index) if settings.do_sample else None
    config = build_generation_config(settings, pad_id, eos_ids)
    device = _device(model)
    sharded = generate_options(model)  # train.sharding: fsdp (parameters gathered, no lock-step)

    # Longest prompts first: less padding per batch, and an out-of-memory error
    # shows up in the first batch rather than the last.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    outputs: list[list[int]] = [[] for _ in encoded]
    with eval_mode(model):
        for start in range(0, len(order), settings.batch_size):
            rows = order[start : start + settings.batch_size]
            input_ids, attention_mask = _left_pad([encoded[i] for i in rows], pad_id)
            processors = None
            if settings.do_sample:
                processors = RowSampler.processors(settings, [seeds[i] for i in rows])
            with torch.inference_mode():
                out = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    generation_config=config,
                    logits_processor=processors,
                    **sharded,
                )
            new_tokens = out[:, input_ids.shape[1] :].tolist()
            for i, tokens in zip(rows, new_tokens):
                outputs[i] = _through_eos(tokens, eos_ids)
            if progress is not None:
                progress(len(rows))
    return outputs


def _encode(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    # An empty prompt would leave a row with nothing to attend to: start it from EOS/BOS.
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return [list(row) if len(row) else [start] for row in ids]


def _truncate_left(ids: list[int], limit: int, tokenizer: Any) -> list[int]:
    """Keep the last `limit` tokens (the end of a prompt is where the answer starts).
    A leading BOS is kept in front, as training's `join_ids` keeps it: a model trained
    with BOS first and prompted without it sees inputs it never saw."""
    if len(ids) <= limit:
        return ids
    bos = tokenizer.bos_token_id
    if bos is None or ids[0] != bos:
        return ids[len(ids) - limit :]
    if limit < 2:
        raise ValueError(f"a prompt limit of {limit} token cannot hold BOS and one prompt token; raise "
                         "max_prompt_length (or lower max_new_tokens, if the model's positions set the limit)")
    return [bos] + ids[len(ids) - limit + 1 :]


def _prompt_limit(model: Any, settings: GenerationSettings) -> int:
    """max_prompt_length, lowered so prompt + new tokens fit the model's positions."""
    n_positions = getattr(model.config, "max_position_embeddings", None)
    limit = settings.max_prompt_length
    if n_positions:
        limit = min(limit, n_positions - settings.max_new_tokens)
        if limit < 1:
            raise ValueError(
                f"max_new_tokens={settings.max_new_tokens} leaves no room for a prompt "
                f"in a model with {n_positions} positions"
            )
    return limit


def _left_pad(rows: list[list[int]], pad_id: int):
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, row in enumerate(rows):
        input_ids[k, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[k, width - len(row) :] = 1
    return input_ids, attention_mask


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    model_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(model_eos, int):
        ids.add(model_eos)
    elif model_eos:
        ids.update(model_eos)
    if not ids:
        raise ValueError("no EOS token: generation could not stop before max_new_tokens")
    return sorted(ids)


def _through_eos(tokens: list[int], eos_ids: list[int]) -> list[int]:
    """Tokens up to and including the first EOS (what follows it is padding)."""
    for k, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: k + 1]
    return tokens


def _decode_until_eos(tokenizer: Any, tokens: list[int], eos_ids: list[int]) -> str:
    for k, token in enumerate(tokens):
        if token in eos_ids:
            tokens = tokens[:k]
            break
    return tokenizer.decode(tokens, skip_special_tokens=True).strip()


def _device(model: Any):
    device = getattr(model, "device", None)
    if device is None:
        device = next(model.parameters()).device
    return device

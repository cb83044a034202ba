"""torch/transformers side of `generate` (imported lazily: settings stay torch-free).

Sampling runs through `model.generate` in greedy mode with a final logits
processor that draws each row's token with that row's own generator and leaves
only the drawn token possible. transformers' own sampler draws every row from the
global RNG in one call, which ties a row's sample to the batch it landed in.
"""
from __future__ import annotations

import numpy as np
import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


def row_seeds(seed: int | None, n: int, first: int = 0) -> list[int]:
    """A well-mixed 64-bit seed per example from (seed, index), indices first..first+n-1."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return [
        int(np.random.SeedSequence([seed, i]).generate_state(1, dtype=np.uint64)[0])
        for i in range(first, first + n)
    ]


def build_generation_config(settings, pad_id: int, eos_ids: list[int]) -> GenerationConfig:
    """An explicit config, so that the processors generate() adds in greedy mode are
    exactly ours. Entries set to neutral values override what a pretrained model's
    generation_config.json would otherwise bring in (transformers fills unset
    entries from it); other constraints stored there, such as bad_words_ids,
    still apply."""
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        num_return_sequences=1,
        max_new_tokens=settings.max_new_tokens,
        min_length=0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=settings.no_repeat_ngram_size,
        use_cache=True,
        pad_token_id=pad_id,
        eos_token_id=eos_ids,
    )


class RowSampler(LogitsProcessor):
    """Samples row k with generator k; returns scores where only that token survives,
    so generate()'s argmax picks it."""

    def __init__(self, seeds: list[int]):
        self.seeds = list(seeds)
        self.generators: list[torch.Generator] | None = None  # made on the first step's device

    @classmethod
    def processors(cls, settings, seeds: list[int]) -> LogitsProcessorList:
        # Same order as transformers' sampling warpers: temperature, top-k, top-p.
        warpers: list[LogitsProcessor] = []
        if settings.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(settings.temperature))
        if settings.top_k > 0:
            warpers.append(TopKLogitsWarper(top_k=settings.top_k))
        if settings.top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=settings.top_p))
        return LogitsProcessorList([*warpers, cls(seeds)])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.seeds):
            raise RuntimeError("RowSampler got a batch of a different size than it was built for")
        if self.generators is None:
            self.generators = [torch.Generator(device=draw_device(scores.device)).manual_seed(s)
                               for s in self.seeds]
        # Drawn where the generators live: on an accelerator no [B, V] copy to the host per step.
        probs = torch.softmax(scores.float(), dim=-1).to(self.generators[0].device)
        drawn = torch.stack(
            [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators)]
        ).to(scores.device)
        only_drawn = torch.full_like(scores, float("-inf"))
        return only_drawn.scatter_(1, drawn, 0.0)


def draw_device(device: torch.device) -> torch.device:
    """Where the per-row generators draw: the scores' device when it has generators of its
    own (CUDA, MPS, XPU), else the CPU. A device's generator gives other draws than the CPU's
    for the same seed, so samples are reproducible per device type, not across them."""
    if device.type == "cpu":
        return device
    try:
        torch.Generator(device=device)
    except RuntimeError:  # e.g. meta: no generator of its own
        return torch.device("cpu")
    return device

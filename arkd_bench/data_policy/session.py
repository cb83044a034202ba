"""What a data policy works with: the grid-level source of built sequences, and the
cell-level session the distillation loop hands an online policy at every micro-batch."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arkd_bench.data_policy.checks import batch_problem


def generated_items(prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
                    max_length: int, bos_token_id: int | None = None) -> list[dict]:
    """Training items of prompts followed by generated continuations (an EOS that ended a
    continuation is kept: stopping there is part of what was generated), truncated as the
    dataset's items are (`join_ids`: BOS and a minimum prompt kept)."""
    from arkd_bench.data.collate import join_ids

    return [join_ids(p, c, max_length, bos_token_id=bos_token_id) for p, c in zip(prompts, continuations)]


def mixed_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (so nearby seeds give unrelated draws)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


@dataclass
class SequenceSource:
    """What `build_sequences` may use: the teacher, the tokenizer and the dataset's
    encoded training items (their prompts are what to continue)."""

    teacher: Any
    tokenizer: Any
    items: Sequence[dict]
    max_length: int
    device: Any = None

    @property
    def prompts(self) -> list[list[int]]:
        from arkd_bench.data.collate import prompt_ids_of

        return prompt_ids_of(self.items)

    def generate(self, model, prompts: Sequence[Sequence[int]], settings, seed: int | None) -> list[list[int]]:
        from arkd_bench.evaluate.generate import generate_ids

        return generate_ids(model, self.tokenizer, [list(p) for p in prompts], settings, seed=seed)


@dataclass
class DataSession:
    """One cell's training, as an online policy sees it.

    `student()` is the current student (unwrapped); `sample(prompts, settings)` draws its
    continuations with the evaluation's batched KV-cache generation, in eval mode, timed,
    each call seeded from (the cell's seed, the policy's seed, the call's number) so the
    same recipe and seed give the same sequences; `validation_loss()` is the student's
    cross-entropy on the held-out probe batch, in eval mode.
    """

    policy: Any  # the cell's DataPolicy
    student: Callable[[], Any]
    tokenizer: Any
    max_length: int
    device: Any
    seed: int
    total_steps: int
    probe_items: Sequence[dict] = ()
    step: int = 0
    generation_seconds: float = 0.0
    generated_sequences: int = 0
    generated_tokens: int = 0
    _calls: int = 0
    _step_seconds: float = field(default=0.0, repr=False)
    _vocab_size: int | None = field(default=None, repr=False)

    @property
    def vocab_size(self) -> int:
        """Entries of the student's (and teacher's) vocabulary: every token id is below it."""
        if self._vocab_size is None:
            from arkd_bench.models.build import vocab_size

            self._vocab_size = vocab_size(self.student())
        return self._vocab_size

    # -- what the distillation loop calls ---------------------------------------------
    def next_batch(self, batch: dict, step: int) -> dict:
        self.step = step
        out = self.policy.batch(batch, self)
        problem = batch_problem(out, batch, self.vocab_size)
        if problem:
            from arkd_bench.plugins.output import PluginOutputError

            raise PluginOutputError("data_policy", self.policy.name, type(self.policy), "batch", problem, step=step)
        return out

    def after_step(self, step: int) -> None:
        self.step = step
        self.policy.after_step(self)

    def log_scalars(self) -> dict[str, float]:
        """The policy's scalars and the generation time since the last call (one log line)."""
        scalars = {f"data/{k}": float(v) for k, v in self.policy.log_scalars().items()}
        scalars["data/generation_seconds"] = round(self._step_seconds, 4)
        self._step_seconds = 0.0
        return scalars

    def summary(self) -> dict[str, Any]:
        steps = max(1, self.total_steps)
        return {"policy": self.policy.describe(), "generation_seconds": round(self.generation_seconds, 3),
                "generation_seconds_per_step": round(self.generation_seconds / steps, 4),
                "generated_sequences": self.generated_sequences, "generated_tokens": self.generated_tokens,
                **{k: float(v) for k, v in self.policy.log_scalars().items()}}

    # -- what a policy uses ------------------------------------------------------------
    @staticmethod
    def prompts(batch: dict) -> list[list[int]]:
        """Prompt ids of each row of a (right-padded) training batch."""
        from arkd_bench.data.collate import prompt_ids_of

        rows = [{"input_ids": ids, "labels": labels}
                for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist())]
        return prompt_ids_of(rows)

    def sample(self, prompts: Sequence[Sequence[int]], settings, policy_seed: int = 0) -> list[dict]:
        """The current student's continuations of `prompts`, as training items."""
        from arkd_bench.evaluate.generate import generate_ids

        seed = mixed_seed(self.seed, policy_seed, self._calls)
        self._calls += 1
        started = time.perf_counter()
        continuations = generate_ids(self.student(), self.tokenizer, [list(p) for p in prompts], settings, seed=seed)
        elapsed = time.perf_counter() - started
        self.generation_seconds += elapsed
        self._step_seconds += elapsed
        self.generated_sequences += len(continuations)
        self.generated_tokens += sum(len(c) for c in continuations)
        return generated_items(prompts, continuations, self.max_length, self.tokenizer.bos_token_id)

    def collate(self, items: Sequence[dict]) -> dict:
        """A training batch of items on the training device (no `index`: the teacher runs on it)."""
        from arkd_bench.data.collate import collate_for_training

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        return {k: v.to(self.device) for k, v in collate_for_training(items, pad).items()}

    def validation_loss(self) -> float:
        """Mean cross-entropy per response token of the current student on the probe items,
        measured in eval mode (no dropout), train mode restored."""
        import torch
        import torch.nn.functional as F

        from arkd_bench.data.collate import IGNORE_INDEX, shift_for_next_token
        from arkd_bench.train.modes import eval_mode

        if not self.probe_items:
            raise ValueError(f"data policy {self.policy.name!r} needs validation examples: the dataset has none")
        model = self.student()
        with eval_mode(model):
            batch = self.collate(self.probe_items)
            with torch.no_grad():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logits, labels = shift_for_next_token(logits, batch["labels"])
            loss = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="sum")
            return loss.item() / max(1, int((labels != IGNORE_INDEX).sum()))

"""What a data policy works with: the grid-level source of built sequences, and the
cell-level session the distillation loop hands an online policy at every micro-batch."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arkd_bench.data_policy.base import DataPolicy, prompt_ids_of


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
        return prompt_ids_of(self.items)

    def generate(self, model, prompts: Sequence[Sequence[int]], settings, seed: int | None) -> list[list[int]]:
        from arkd_bench.evaluate.generate import generate_ids

        model.to(self.device)
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

    policy: DataPolicy
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
            from arkd_bench.train.models import vocab_size

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

        if not self.probe_items:
            raise ValueError(f"data policy {self.policy.name!r} needs validation examples: the dataset has none")
        model = self.student()
        was_training = model.training
        model.eval()
        try:
            batch = self.collate(self.probe_items)
            with torch.no_grad():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
            loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="sum")
            return loss.item() / max(1, int((labels != -100).sum()))
        finally:
            model.train(was_training)


# -- what is checked of a policy's sequences --------------------------------------------------
BATCH_KEYS = ("input_ids", "labels", "attention_mask")


def batch_problem(batch: Any, given: dict, vocab_size: int) -> str | None:
    """What is wrong with a training batch an online policy returned, or None: the three
    tensors of one shape [batch, length], token ids in the vocabulary, labels ids or -100,
    attention 0 or 1, and no `index` (the teacher cache's row) beside sequences that are not
    that row's. One device synchronisation, none when the policy returned `given` itself."""
    import torch

    if batch is given:
        return None
    if not isinstance(batch, dict):
        return f"expected a dict with {', '.join(BATCH_KEYS)}, got {type(batch).__name__}"
    missing = [k for k in BATCH_KEYS if not isinstance(batch.get(k), torch.Tensor)]
    if missing:
        return (f"{', '.join(repr(k) for k in missing)} missing or not a tensor (keys: {sorted(batch)}); "
                "session.collate(items) makes a batch")
    ids, labels, attention = (batch[k] for k in BATCH_KEYS)
    if ids.dim() != 2 or labels.shape != ids.shape or attention.shape != ids.shape:
        return ("input_ids, labels and attention_mask must share one shape [batch, length]; got "
                f"{tuple(ids.shape)}, {tuple(labels.shape)} and {tuple(attention.shape)}")
    floats = [k for k in BATCH_KEYS if batch[k].is_floating_point() or batch[k].is_complex()]
    if floats:
        return f"{', '.join(floats)} must hold integers, got {', '.join(str(batch[k].dtype) for k in floats)}"
    if ids.numel() == 0:
        return f"an empty batch of shape {tuple(ids.shape)}"
    # Rows of the teacher cache ("index") fit only the sequences they were computed for.
    kept_index = "index" in batch and "index" in given and torch.equal(batch["index"], given["index"])
    if kept_index and ids.shape != given["input_ids"].shape:
        return _KEPT_INDEX
    same = (ids == given["input_ids"].to(ids.device)).all() if kept_index else torch.ones((), dtype=torch.bool,
                                                                                           device=ids.device)
    labels, attention = labels.to(ids.device), attention.to(ids.device)
    low, high, labels_ok, attention_ok, same = torch.stack([
        ids.min(), ids.max(),
        ((labels == -100) | ((labels >= 0) & (labels < vocab_size))).all().to(ids.dtype),
        ((attention == 0) | (attention == 1)).all().to(ids.dtype),
        same.to(ids.dtype),
    ]).tolist()
    if low < 0 or high >= vocab_size:
        return f"input_ids outside the vocabulary [0, {vocab_size}): min {low}, max {high}"
    if not labels_ok:
        return f"labels must be -100 (not scored) or token ids in [0, {vocab_size})"
    if not attention_ok:
        return "attention_mask must hold only 0 and 1"
    if not same:
        return _KEPT_INDEX
    return None


_KEPT_INDEX = ("the batch keeps the dataset batch's 'index' but holds other sequences: the teacher's cached "
               "outputs of those rows would be used for them; drop 'index' (session.collate does) so the "
               "teacher runs on the new sequences")


def items_problem(items: Any, vocab_size: int) -> str | None:
    """What is wrong with built training items, or None: a non-empty list of dicts whose
    `input_ids` and `labels` are lists of Python ints of one length, ids in the vocabulary,
    labels ids or -100, at least one scored label in all."""
    if not isinstance(items, list) or not items:
        return f"expected a non-empty list of items, got {type(items).__name__}{'' if items else ' (empty)'}"
    scored = False
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not all(k in item for k in ("input_ids", "labels")):
            keys = sorted(item) if isinstance(item, dict) else type(item).__name__
            return f"item {i} is not a dict with 'input_ids' and 'labels' ({keys}); see generated_items"
        ids, labels = item["input_ids"], item["labels"]
        if not isinstance(ids, list) or not isinstance(labels, list) or not all(
                type(x) is int for x in ids) or not all(type(x) is int for x in labels):
            return (f"item {i}: input_ids and labels must be lists of Python ints, got "
                    f"{type(ids).__name__} and {type(labels).__name__}")
        if not ids or len(ids) != len(labels):
            return f"item {i} has {len(ids)} input_ids and {len(labels)} labels (the same non-zero number expected)"
        if min(ids) < 0 or max(ids) >= vocab_size:
            return (f"item {i} has token ids outside the vocabulary [0, {vocab_size}): "
                    f"min {min(ids)}, max {max(ids)}")
        bad = next((x for x in labels if x != -100 and not 0 <= x < vocab_size), None)
        if bad is not None:
            return f"item {i} has label {bad}: labels are -100 (not scored) or token ids in [0, {vocab_size})"
        scored = scored or any(x != -100 for x in labels)
    if not scored:
        return "no item has a scored label (every label is -100): there would be nothing to train on"
    return None


def check_built_sequences(policy: DataPolicy, items: Any, source: SequenceSource) -> None:
    """Raise a PluginOutputError naming the policy when `build_sequences` returned bad items."""
    from arkd_bench.train.models import vocab_size

    problem = items_problem(items, vocab_size(source.teacher))
    if problem:
        from arkd_bench.plugins.output import PluginOutputError, name_of

        raise PluginOutputError("data_policy", name_of(policy), type(policy), "build_sequences", problem)

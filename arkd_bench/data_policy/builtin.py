"""Builtin data policies: ground truth, teacher generations (SeqKD), on-policy student
samples (GKD's lambda) and DistiLLM's adaptive off-policy replay."""
from __future__ import annotations

import random
from collections import deque
from typing import Literal

from pydantic import Field, model_validator

from arkd_bench.data_policy.base import DataPolicy, DataPolicyOptions


class SamplingOptions(DataPolicyOptions):
    """How generated sequences are drawn (recorded in cell ids and, for SeqKD, the cache key)."""

    do_sample: bool = Field(True, description="sample (True) or greedy decoding (False)")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(48, ge=1, description="longest generated response")
    seed: int = Field(0, description="added to the sampling seeds")

    def settings(self, max_length: int, batch_size: int = 64):
        from arkd_bench.evaluate.generate import GenerationSettings

        return GenerationSettings(do_sample=self.do_sample, temperature=self.temperature, top_p=self.top_p,
                                  max_new_tokens=self.max_new_tokens, max_prompt_length=max(1, max_length - 1),
                                  batch_size=batch_size)

    def fit_prompts(self, prompts, max_length: int, bos_token_id: int | None) -> list[list[int]]:
        """The prompts as the model is to continue them: cut from the left (BOS kept) to leave
        `max_new_tokens` of room in `max_length`, so the training sequence (`join_ids`) keeps
        exactly the prompt its continuation was generated from."""
        from arkd_bench.data.collate import prompt_for_continuation

        return [prompt_for_continuation(p, max_length, self.max_new_tokens, bos_token_id) for p in prompts]


class GroundTruthOptions(DataPolicyOptions):
    targets: Literal["distribution", "tokens"] = Field(
        "distribution", description="distil the teacher's distributions on the references, or train on their "
                                    "tokens (more SFT: FKL against a one-hot is the cross-entropy)")


class GroundTruth(DataPolicy):
    """The dataset's reference responses (the default)."""

    name = "ground_truth"
    Options = GroundTruthOptions

    @property
    def targets(self):
        return self.options.targets

    def describe(self) -> str:
        return "references (SFT on their tokens)" if self.options.targets == "tokens" else "references"


class TeacherOptions(SamplingOptions):
    samples: int = Field(1, ge=1, description="generations per training prompt")
    targets: Literal["distribution", "tokens"] = Field(
        "distribution", description="distil the teacher's distributions on its generations, or train on "
                                    "their tokens (SFT on teacher outputs: FKL against a one-hot is the cross-entropy)")

    @model_validator(mode="after")
    def _distinct_samples(self):
        if self.samples > 1 and not self.do_sample:
            raise ValueError("samples > 1 needs do_sample: true (greedy decoding repeats one answer)")
        return self


class TeacherGenerated(DataPolicy):
    """SeqKD: the teacher's generations for the training prompts, built once per grid."""

    name = "teacher"
    Options = TeacherOptions
    builds_sequences = True

    @property
    def targets(self):
        return self.options.targets

    def sequence_settings(self):
        # SFT on the tokens and distillation on the distributions share one set of generations.
        # "prompts": generated from prompts cut to leave room for max_new_tokens (sequences built
        # before that were generated from longer prompts than they train on: another key).
        return {**self.options.model_dump(mode="json", exclude={"targets"}), "prompts": "fit_continuation"}

    def build_sequences(self, source):
        from arkd_bench.data_policy.session import generated_items

        prompts = self.options.fit_prompts(source.prompts, source.max_length, source.tokenizer.bos_token_id)
        settings = self.options.settings(source.max_length)
        items = []
        for k in range(self.options.samples):
            continuations = source.generate(source.teacher, prompts, settings, seed=self.options.seed + k)
            items.append(generated_items(prompts, continuations, source.max_length, source.tokenizer.bos_token_id))
        # Prompt-major: the k samples of one prompt sit next to each other.
        return [by_sample[i] for i in range(len(prompts)) for by_sample in items]

    def describe(self) -> str:
        how = "sampled" if self.options.do_sample else "greedy"
        what = "SFT on its tokens" if self.options.targets == "tokens" else "its distributions"
        return f"teacher ({how} x{self.options.samples}, {what})"


class StudentOptions(SamplingOptions):
    lmbda: float = Field(1.0, ge=0, le=1, description="GKD's lambda: the probability that a batch is the "
                                                      "student's own samples (1 on-policy, 0 ground truth)")


class OnPolicy(DataPolicy):
    """GKD: with probability lambda a batch is the current student's samples for its prompts."""

    name = "student"
    Options = StudentOptions
    online = True

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self._coin: random.Random | None = None
        self.on_policy_batches = 0
        self.batches = 0

    def batch(self, batch, session):
        if self._coin is None:  # seeded by the cell's training seed, so seeds vary the draws
            self._coin = random.Random(session.seed * 1_000_003 + self.options.seed)
        self.batches += 1
        if self._coin.random() >= self.options.lmbda:
            return batch
        self.on_policy_batches += 1
        prompts = self.options.fit_prompts(session.prompts(batch), session.max_length, session.tokenizer.bos_token_id)
        items = session.sample(prompts, self.options.settings(session.max_length, len(prompts)), self.options.seed)
        return session.collate(items)

    def log_scalars(self):
        return {"on_policy_fraction": self.on_policy_batches / max(1, self.batches)}

    def describe(self) -> str:
        return f"student (lmbda {self.options.lmbda:g})"


class ReplayOptions(SamplingOptions):
    capacity: int = Field(1000, ge=1, description="sequences the replay buffer keeps (oldest dropped first)")
    init_threshold: float = Field(0.0, ge=0, le=1, description="starting probability of student data")
    loss_eps: float = Field(0.1, ge=0, description="rise of the validation loss that raises the threshold")
    threshold_step: float = Field(0.1, gt=0, le=1, description="how much a rise raises the threshold")
    check_every: int = Field(50, ge=1, description="optimizer steps between validation-loss checks")
    replay_ratio: Literal["decreasing", "constant", "increasing"] = Field(
        "decreasing", description="how the share of fresh samples among student batches moves over training")


class Replay(DataPolicy):
    """DistiLLM's adaptive off-policy: student samples kept in a replay buffer, with a
    probability of student data that grows whenever the validation loss rises.

    The rule, as in DistiLLM's released training loop (`finetune.py` of jongwooko/distillm,
    options `--init-threshold`, `--loss-eps`, `--capacity`, `--replay-ratio`): the threshold
    tau starts at `init_threshold`. Each micro-batch draws r ~ U(0, 1) and sets the fresh-sample
    threshold s = tau (1 - t/T) ("decreasing", the default; "constant": tau/2; "increasing":
    tau t/T) at step t of T.
      - r < s, or r < tau while the buffer is not yet full: sample the current student on the
        batch's prompts, add the sequences to the buffer, train on them;
      - else r < tau: train on a batch drawn uniformly, without replacement, from the buffer;
      - else: the ground-truth batch.
    The student's validation loss (cross-entropy on the held-out probe, eval mode) is measured
    before training and every `check_every` steps; when it reaches the last recorded value
    + `loss_eps`, tau rises by `threshold_step` (at most 1) and that value becomes the new
    reference. (DistiLLM checks at its evaluation interval, an epoch in its scripts.)
    """

    name = "replay"
    Options = ReplayOptions
    online = True

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.threshold = self.options.init_threshold
        self.buffer: deque[dict] = deque(maxlen=self.options.capacity)
        self.reference_loss: float | None = None
        self.counts = {"fresh": 0, "replayed": 0, "ground_truth": 0}
        self._rng: random.Random | None = None

    def _start(self, session) -> None:
        self._rng = random.Random(session.seed * 1_000_003 + self.options.seed)
        self.reference_loss = session.validation_loss()

    def sample_threshold(self, step: int, total: int) -> float:
        if self.options.replay_ratio == "constant":
            return self.threshold * 0.5
        progress = step / max(1, total)
        return self.threshold * (progress if self.options.replay_ratio == "increasing" else 1 - progress)

    def batch(self, batch, session):
        if self._rng is None:
            self._start(session)
        r = self._rng.random()
        fresh_below = self.sample_threshold(session.step, session.total_steps)
        if r < fresh_below or (r < self.threshold and len(self.buffer) < self.options.capacity):
            prompts = self.options.fit_prompts(session.prompts(batch), session.max_length,
                                               session.tokenizer.bos_token_id)
            items = session.sample(prompts, self.options.settings(session.max_length, len(prompts)),
                                   self.options.seed)
            self.buffer.extend(items)
            self.counts["fresh"] += 1
            return session.collate(items)
        if r < self.threshold:
            size = min(len(self.buffer), batch["input_ids"].shape[0])
            self.counts["replayed"] += 1
            return session.collate(self._rng.sample(list(self.buffer), size))
        self.counts["ground_truth"] += 1
        return batch

    def after_step(self, session):
        if self._rng is None or (session.step + 1) % self.options.check_every:
            return
        loss = session.validation_loss()
        if loss >= self.reference_loss + self.options.loss_eps:
            self.threshold = min(1.0, self.threshold + self.options.threshold_step)
            self.reference_loss = loss

    def log_scalars(self):
        total = max(1, sum(self.counts.values()))
        return {"threshold": self.threshold, "fresh_fraction": self.counts["fresh"] / total,
                "replayed_fraction": self.counts["replayed"] / total, "buffer": float(len(self.buffer))}

    def describe(self) -> str:
        return f"replay (adaptive, start {self.options.init_threshold:g})"


BUILTIN_DATA_POLICIES: dict[str, type[DataPolicy]] = {
    cls.name: cls for cls in (GroundTruth, TeacherGenerated, OnPolicy, Replay)
}

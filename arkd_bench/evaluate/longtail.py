"""Metrics of the synthetic long-tail task (`arkd_bench.data.longtail`).

Each test example there carries meta {"answers": [a_0 .. a_{K-1}], "probs": [p_0 ..]},
the exact answer distribution the training data was sampled from. A model's
distribution over that candidate set: for every answer, the teacher-forced
log-probability of its tokens followed by eos given the prompt (encoded exactly
as training encodes the pair), normalized over the K candidates:
    P_k = exp(l_k) / sum_j exp(l_j),   l_k = log p_model(answer_k + eos | prompt).
Per example (h = the true head, the answer with the largest meta prob):

  lt_head_mass      100 * P_h                                       higher = more mass on the head
  lt_mode_mass      100 * max_k P_k                                 higher = more peaked
  lt_tail_coverage  100 * #{k != h : P_k >= threshold} / (K - 1)    higher = more of the tail kept
  lt_entropy        -sum_k P_k ln P_k, nats                         higher = more spread
  lt_tv             100 * 0.5 * sum_k |P_k - probs_k|               lower is better

Mode-seeking training (RKL) should raise lt_mode_mass and lower lt_entropy and
lt_tail_coverage; mode-covering training (FKL) the opposite. Head mass, mode mass
and entropy have no "right" direction (the truth has its own values: 100 *
head_mass and the entropy of `probs`); their `higher_is_better = True` only fixes
what `beats` means in a check (larger). Only lt_tv measures closeness to the truth.
The normalization hides mass the model puts outside the candidate set; the
teacher is not used.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from arkd_bench.evaluate import teacher_forced as tf
from arkd_bench.evaluate.base import ModelMetric
from arkd_bench.plugins.options import PluginOptions
from arkd_bench.train.modes import eval_mode


class CandidateOptions(PluginOptions):
    batch_size: int = Field(64, ge=1, description="(prompt, candidate) sequences per forward pass")
    max_length: int = Field(256, ge=8, description="prompt + answer tokens, as in training")


class TailCoverageOptions(CandidateOptions):
    threshold: float = Field(0.02, gt=0, lt=1, description="normalized probability a tail answer needs to count")


class _Longtail(ModelMetric):
    Options: ClassVar[type[BaseModel]] = CandidateOptions
    unit: ClassVar[str] = "x100"
    bounds = (0.0, 100.0)

    def score_models(self, student, teacher, tokenizer, examples) -> list[float]:
        answer_sets = check_answer_sets(self.name, examples)
        dists = candidate_distributions(student, tokenizer, examples, batch_size=self.options.batch_size,
                                        max_length=self.options.max_length)
        return [self.of(P, truth) for P, truth in zip(dists, answer_sets)]

    def of(self, P: list[float], truth: list[float]) -> float:
        """The metric of one example from the model's normalized P and the true probs."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        return {"metric": self.name, "options": self.options.model_dump(), "unit": self.unit,
                "distribution": "teacher-forced log p(answer + eos | prompt) of each candidate, "
                                "normalized over the example's candidate set"}


def _head(truth: list[float]) -> int:
    return max(range(len(truth)), key=truth.__getitem__)


class LongtailHeadMass(_Longtail):
    """Normalized probability of the true head answer, x100."""

    name: ClassVar[str] = "lt_head_mass"

    def of(self, P, truth):
        return 100.0 * P[_head(truth)]


class LongtailModeMass(_Longtail):
    """Largest normalized candidate probability, x100."""

    name: ClassVar[str] = "lt_mode_mass"

    def of(self, P, truth):
        return 100.0 * max(P)


class LongtailTailCoverage(_Longtail):
    """Percent of the tail answers whose normalized probability reaches `threshold`."""

    name: ClassVar[str] = "lt_tail_coverage"
    Options: ClassVar[type[BaseModel]] = TailCoverageOptions

    def of(self, P, truth):
        h = _head(truth)
        covered = sum(P[k] >= self.options.threshold for k in range(len(P)) if k != h)
        return 100.0 * covered / (len(P) - 1)


class LongtailEntropy(_Longtail):
    """Entropy of the normalized candidate distribution, in nats."""

    name: ClassVar[str] = "lt_entropy"
    unit: ClassVar[str] = "nats"
    scale = "nats"
    bounds = (0.0, None)

    def of(self, P, truth):
        return -sum(x * math.log(x) for x in P if x > 0)


class LongtailTV(_Longtail):
    """Total variation distance to the true answer distribution, x100."""

    name: ClassVar[str] = "lt_tv"
    higher_is_better: ClassVar[bool] = False

    def of(self, P, truth):
        total = sum(truth)
        return 100.0 * 0.5 * sum(abs(x - t / total) for x, t in zip(P, truth))


LONGTAIL_METRICS: tuple[type[ModelMetric], ...] = (LongtailHeadMass, LongtailModeMass, LongtailTailCoverage,
                                               LongtailEntropy, LongtailTV)


def check_answer_sets(metric: str, examples) -> list[list[float]]:
    """The true probs of every example, or a ValueError naming the metric and what it needs."""
    out = []
    for i, e in enumerate(examples):
        meta = getattr(e, "meta", None) or {}
        answers, probs = meta.get("answers"), meta.get("probs")
        problem = None
        if answers is None or probs is None:
            problem = f"its meta has keys {sorted(meta) or 'none'}"
        elif len(answers) < 2 or len(answers) != len(probs):
            problem = f"it has {len(answers)} answers and {len(probs)} probs"
        elif min(probs) < 0 or sum(probs) <= 0:
            problem = "its probs are not a distribution"
        if problem:
            raise ValueError(
                f"{metric} needs a dataset whose test examples carry their answer distribution "
                "(meta 'answers': [str], 'probs': [float] of the same length >= 2), as the `longtail` source "
                f"provides; test example {i} ({e.prompt[:60]!r}) does not: {problem}")
        out.append([float(p) for p in probs])
    return out


def candidate_distributions(model, tokenizer, examples, *, batch_size: int = 64,
                            max_length: int = 256) -> list[list[float]]:
    """Per example, the model's normalized probability of each candidate answer (meta order).
    Shared by the lt_* metrics within `teacher_forced.shared_passes()`."""
    key = ("longtail", id(model), id(tokenizer), id(examples), len(examples), batch_size, max_length)
    return tf.memo(key, lambda: _compute(model, tokenizer, examples, batch_size, max_length))


def _compute(model, tokenizer, examples, batch_size, max_length) -> list[list[float]]:
    import torch

    pairs = [(e.prompt, a) for e in examples for a in e.meta["answers"]]
    items = tf.encode_pairs(tokenizer, pairs, tf.length_limit(model, max_length))
    logp: list[float] = []
    with eval_mode(model), torch.inference_mode():
        for _, batch in tf.batches(items, batch_size, tf.pad_id(tokenizer)):
            logits, targets, mask = tf.next_token_logits(model, batch)
            token_logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp_min(0).unsqueeze(-1))
            logp += torch.where(mask, token_logp.squeeze(-1), 0.0).double().sum(1).tolist()
    out, start = [], 0
    for e in examples:
        k = len(e.meta["answers"])
        out.append(torch.softmax(torch.tensor(logp[start:start + k], dtype=torch.float64), 0).tolist())
        start += k
    return out

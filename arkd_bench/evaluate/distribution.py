"""Teacher-forced distribution metrics: how close the student's next-token
distributions are to the teacher's, on the test set's (prompt, first reference) pairs.

Both models read the same tokens (the pair encoded as in training). For each
example, over its response tokens (reference + eos; the prompt is not scored),
with p the teacher's and q the student's distribution at token t:

  tf_fkl            mean_t KL(p || q), nats                                     lower is better
  tf_rkl            mean_t KL(q || p), nats                                     lower is better
  tf_tvd            mean_t 0.5 * sum_v |p - q|, x100                            lower is better
  tf_head_mass      mean_t sum_{v in H_t} q_v, x100                             higher is better
  tf_tail_coverage  100 * sum_t sum_{v not in H_t} min(p_v, q_v)
                        / sum_t sum_{v not in H_t} p_v                          higher is better

H_t is the teacher's AKL head at token t (the smallest teacher-sorted prefix whose
mass reaches mu, top-1 always in; `mu` option, default 0.5), the same set the
greedy weighting uses. Head mass is the student's probability on the tokens the
teacher finds likely; tail coverage is the share of the teacher's tail mass that
the student also puts there (min(p, q) counts only what both agree on), pooled
over the example's tokens so that tokens with almost no teacher tail weigh
almost nothing; an example whose teacher tail mass is exactly 0 scores 100.
Read the two together: a mode-seeking student can exceed the teacher's own head
mass while covering little of its tail. The teacher scored against itself gets
0 divergence, its own head mass and 100 coverage.

The values come from `divergence_pass` (fkl, rkl, tvd) and AKL's `head_gaps`,
batched and without gradients. Teacher and student vocabularies padded to different sizes
are compared over their shared rows (arkd_bench.models.vocabulary).
"""
from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

from arkd_bench.evaluate import teacher_forced as tf
from arkd_bench.evaluate.base import ModelMetric
from arkd_bench.plugins.options import PluginOptions
from arkd_bench.train.modes import eval_mode


class TeacherForcedOptions(PluginOptions):
    batch_size: int = Field(16, ge=1, description="examples per forward pass")
    max_length: int = Field(256, ge=8, description="prompt + response tokens, truncated as in training "
                                                    "(BOS and a minimum prompt kept)")


class HeadTailOptions(TeacherForcedOptions):
    mu: float = Field(0.5, gt=0, lt=1, description="teacher mass of the AKL head set")


class _TeacherForced(ModelMetric):
    Options: ClassVar[type[BaseModel]] = TeacherForcedOptions
    unit: ClassVar[str] = "x100"
    bounds = (0.0, 100.0)

    def score_models(self, student, teacher, tokenizer, examples) -> list[float]:
        if teacher is None:
            raise ValueError(f"{self.name} compares the student with the teacher, but no teacher was given")
        mu = getattr(self.options, "mu", 0.5)
        stats = teacher_forced_stats(student, teacher, tokenizer, examples, mu=mu,
                                     batch_size=self.options.batch_size, max_length=self.options.max_length)
        return stats[self.name]

    def settings(self) -> dict[str, Any]:
        return {"metric": self.name, "options": self.options.model_dump(), "unit": self.unit,
                "pairs": "test (prompt, first reference), teacher-forced; response tokens + eos",
                "per_example": "mean over response tokens" if self.name != "tf_tail_coverage"
                else "tail mass pooled over response tokens"}


class TFForwardKL(_TeacherForced):
    """Mean forward KL(teacher || student) per response token, in nats."""

    name: ClassVar[str] = "tf_fkl"
    higher_is_better: ClassVar[bool] = False
    unit: ClassVar[str] = "nats"
    scale = "nats"
    bounds = (0.0, None)
    teacher_value = 0.0


class TFReverseKL(_TeacherForced):
    """Mean reverse KL(student || teacher) per response token, in nats."""

    name: ClassVar[str] = "tf_rkl"
    higher_is_better: ClassVar[bool] = False
    unit: ClassVar[str] = "nats"
    scale = "nats"
    bounds = (0.0, None)
    teacher_value = 0.0


class TFTotalVariation(_TeacherForced):
    """Mean total variation distance per response token, x100."""

    name: ClassVar[str] = "tf_tvd"
    higher_is_better: ClassVar[bool] = False
    teacher_value = 0.0


class TFHeadMass(_TeacherForced):
    """Student mass on the teacher's AKL head set, mean per response token, x100."""

    name: ClassVar[str] = "tf_head_mass"
    Options: ClassVar[type[BaseModel]] = HeadTailOptions


class TFTailCoverage(_TeacherForced):
    """Share of the teacher's tail mass the student covers (sum of min(p, q) over the tail), x100."""

    name: ClassVar[str] = "tf_tail_coverage"
    Options: ClassVar[type[BaseModel]] = HeadTailOptions
    teacher_value = 100.0  # the teacher covers all of its own tail


DISTRIBUTION_METRICS: tuple[type[ModelMetric], ...] = (TFForwardKL, TFReverseKL, TFTotalVariation, TFHeadMass,
                                                   TFTailCoverage)


def teacher_forced_stats(student, teacher, tokenizer, examples, *, mu: float = 0.5, batch_size: int = 16,
                         max_length: int = 256) -> dict[str, list[float]]:
    """Every tf_* metric's per-example scores (one pass of each model, shared within
    `teacher_forced.shared_passes()`)."""
    key = ("distribution", id(student), id(teacher), id(tokenizer), id(examples), len(examples), mu, batch_size,
           max_length)
    return tf.memo(key, lambda: _compute(student, teacher, tokenizer, examples, mu, batch_size, max_length))


def _compute(student, teacher, tokenizer, examples, mu, batch_size, max_length) -> dict[str, list[float]]:
    import torch

    from arkd_bench.divergences import FKL, RKL, TVD, divergence_pass
    from arkd_bench.models.vocabulary import trim_logits

    limit = min(tf.length_limit(student, max_length), tf.length_limit(teacher, max_length))
    items = tf.encode_pairs(tokenizer, [(e.prompt, e.references[0]) for e in examples], limit)
    teacher_rows = _teacher_rows(teacher, tokenizer, items, batch_size)
    terms = {"tf_fkl": FKL(), "tf_rkl": RKL(), "tf_tvd": TVD()}
    out: dict[str, list[float]] = {name: [] for name in (*terms, "tf_head_mass", "tf_tail_coverage")}
    with eval_mode(student), torch.inference_mode():
        for (_, batch), t_rows in zip(tf.batches(items, batch_size, tf.pad_id(tokenizer)), teacher_rows):
            s_logits, _, mask = tf.next_token_logits(student, batch)
            s_rows, t_rows = s_logits[mask], t_rows.to(s_logits.device)  # the response tokens only
            s_rows, t_rows = trim_logits(s_rows, t_rows, tokenizer)  # padded vocabularies: the shared rows
            values = divergence_pass(student_logits=s_rows, teacher_logits=t_rows, terms=terms,
                                     mu=mu, features=False).values  # [3, rows]
            head_q, covered, tail_p = _head_tail(t_rows, s_rows, mu)
            example = mask.nonzero()[:, 0]  # the batch row of each scored token
            per_example = torch.zeros(6, mask.shape[0], dtype=torch.float64, device=mask.device)
            per_example.index_add_(1, example, torch.cat([values, torch.stack([head_q, covered, tail_p])]).double())
            tokens = mask.sum(1).clamp_min(1).double()
            for k, name in enumerate(terms):
                scale = 1.0 if name != "tf_tvd" else 100.0
                out[name] += (scale * per_example[k] / tokens).tolist()
            out["tf_head_mass"] += (100.0 * per_example[3] / tokens).tolist()
            coverage = torch.where(per_example[5] > 0, per_example[4] / per_example[5].clamp_min(1e-300),
                                   torch.ones_like(per_example[5]))
            out["tf_tail_coverage"] += (100.0 * coverage).tolist()
    return out


def _teacher_rows(teacher, tokenizer, items, batch_size) -> list:
    """Per batch, the teacher's logits at the response tokens [rows, V]: computed once per run
    for a teacher that a run never trains (`teacher_forced.frozen_models`), since every cell of
    the grid scores its student against the same teacher on the same pairs."""
    import torch

    def build():
        rows = []
        with eval_mode(teacher), torch.inference_mode():
            for _, batch in tf.batches(items, batch_size, tf.pad_id(tokenizer)):
                logits, _, mask = tf.next_token_logits(teacher, batch)
                rows.append(logits[mask])
        return rows

    encoded = tuple((tuple(item["input_ids"]), tuple(item["labels"])) for item in items)
    return tf.frozen((teacher, tokenizer), ("teacher_rows", batch_size, encoded), build,
                     size=lambda rows: sum(r.numel() * r.element_size() for r in rows))


def _head_tail(t_logits, s_logits, mu: float, chunk: int = 256):
    """Per token row: student mass on the teacher's head, sum of min(p, q) over the tail, and
    the teacher's tail mass. `head_gaps(t_logp, x, 0)` sums x over the head and the tail of the
    teacher's head/tail split, so AKL's own split is reused rather than re-implemented."""
    import torch

    from arkd_bench.divergences.akl import head_gaps

    parts = []
    for start in range(0, t_logits.shape[0], chunk):
        # q as exp(log_softmax), like p: a student equal to the teacher then covers exactly 100
        t_logp = torch.log_softmax(t_logits[start:start + chunk], dim=-1)
        p, q = t_logp.exp(), torch.log_softmax(s_logits[start:start + chunk], dim=-1).exp()
        zero = torch.zeros_like(p)
        head_q = head_gaps(t_logp, q, zero, mu)[0]
        covered = head_gaps(t_logp, torch.minimum(p, q), zero, mu)[1]
        tail_p = head_gaps(t_logp, p, zero, mu)[1]
        parts.append(torch.stack([head_q, covered, tail_p]))
    if not parts:
        return tuple(t_logits.new_zeros(0) for _ in range(3))
    return tuple(torch.cat(parts, dim=1))

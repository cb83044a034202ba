"""The one distillation loop: teacher and student forward, the fused divergence pass,
a weighting strategy mixing the terms, and an accelerate-driven update."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arkd_bench.recipe.schema import MethodSpec, TrainSpec
from arkd_bench.train.optim import adamw_with_schedule, forever, shifted, training_loader
from arkd_bench.train.sft import TrainingDiverged

# Criteria measured on a held-out probe batch for strategies that request feedback.
PROBE_CRITERIA = ("fkl", "rkl", "tvd")


@dataclass
class DistillOutcome:
    student: Any
    strategy: Any
    log: list[dict[str, Any]] = field(default_factory=list)


def masked_mean(values, mask):
    """Mean over unmasked tokens; 0 (not NaN) when every token is masked."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def weighted_loss(values, weights, mask):
    """sum_t w_t * mean over tokens of term t; weights are [T] or [T, *token_shape]."""
    if weights.dim() == 1:
        weights = weights.view(-1, *([1] * (values.dim() - 1)))
    weights = weights.to(device=values.device, dtype=values.dtype)
    return masked_mean((weights * values).sum(0), mask)


class Distiller:
    """Holds what one cell's distillation needs; `run()` trains the student."""

    def __init__(self, *, student, teacher, tokenizer, train_examples, method: MethodSpec, train: TrainSpec,
                 plugins, seed: int, accelerator, probe_examples=(), rouge_probe=None):
        self.student, self.teacher, self.tokenizer = student, teacher, tokenizer
        self.train_examples = list(train_examples)
        self.method, self.train, self.seed = method, train, seed
        self.accelerator = accelerator
        self.terms = {t.key: plugins.create("divergence", t.name, **t.options) for t in method.objective}
        self.strategy = plugins.create("weighting", method.weighting.name,
                                       terms=list(self.terms), **method.weighting.options)
        self.probe_examples = list(probe_examples)
        self.rouge_probe = rouge_probe
        self.criteria = {name: plugins.create("divergence", name) for name in PROBE_CRITERIA}

    def _pass(self, model_logits, teacher_logits, mask, terms):
        from arkd_bench.divergences import divergence_pass

        # A strategy built on AKL's gaps (greedy, arkd) decides the head mass it needs.
        mu = getattr(self.strategy, "akl_mu", None) or self.train.mu
        return divergence_pass(student_logits=model_logits, teacher_logits=teacher_logits, mask=mask,
                               terms=terms, mu=mu, temperature=self.train.temperature,
                               chunk_size=self.train.chunk_size)

    def _logits(self, batch):
        import torch

        student_logits = self.student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        with torch.no_grad():
            teacher_logits = self.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        student_logits, labels = shifted(student_logits, batch["labels"])
        teacher_logits, _ = shifted(teacher_logits, batch["labels"])
        return student_logits, teacher_logits, labels

    def _criteria(self, batch) -> dict[str, float]:
        """Alignment criteria of the current student on `batch` (no gradient)."""
        import torch

        with torch.no_grad():
            s, t, labels = self._logits(batch)
            out = self._pass(s, t, labels != -100, self.criteria)
        return {name: out.features.batch_mean(out.values[i]) for i, name in enumerate(self.criteria)}

    def run(self, on_log: Callable[[dict[str, Any]], None] | None = None) -> DistillOutcome:
        import torch
        import torch.nn.functional as F

        from arkd_bench.data.collate import collate_for_training, encode_for_training
        from arkd_bench.weighting import Feedback

        acc, train = self.accelerator, self.train
        torch.manual_seed(self.seed)
        loader = training_loader(self.train_examples, self.tokenizer, train.batch_size, train.max_length, self.seed)
        optimizer, scheduler = adamw_with_schedule(self.student, train.lr, train.weight_decay,
                                                   train.warmup_steps, train.steps)
        self.student, optimizer, loader, scheduler = acc.prepare(self.student, optimizer, loader, scheduler)
        self.teacher.to(acc.device).eval()
        requests = self.strategy.feedback_requests
        probe = None
        if "probe" in requests:
            if not self.probe_examples:
                raise ValueError(f"weighting {self.method.weighting.name!r} needs a probe batch: the dataset has no validation examples")
            probe = collate_for_training([encode_for_training(self.tokenizer, e.prompt, e.references[0], train.max_length)
                                          for e in self.probe_examples], self.tokenizer.pad_token_id)
            probe = {k: v.to(acc.device) for k, v in probe.items()}
        outcome = DistillOutcome(student=None, strategy=self.strategy)
        batches = forever(loader)
        self.student.train()
        for step in range(train.steps):
            batch = next(batches)
            s_logits, t_logits, labels = self._logits(batch)
            mask = labels != -100
            out = self._pass(s_logits, t_logits, mask, self.terms)
            features = out.features
            features.step, features.total_steps = step, train.steps
            with torch.no_grad():
                ce = F.cross_entropy(s_logits.detach().float().transpose(1, 2), labels.clamp_min(0), reduction="none")
                features.ce = ce * mask
            weights = self.strategy.weights(features)
            loss = weighted_loss(out.values, weights, mask)
            term_losses = {key: features.batch_mean(out.values[i].detach()) for i, key in enumerate(self.terms)}
            if not torch.isfinite(loss):
                bad = [k for k, v in term_losses.items() if not torch.isfinite(torch.tensor(v))]
                raise TrainingDiverged(
                    f"step {step}: loss is {loss.item()}; non-finite terms: {bad or 'none (the weights are)'}")
            probe_before = self._criteria(probe) if probe is not None else None
            acc.backward(loss)
            if train.grad_clip is not None:
                acc.clip_grad_norm_(self.student.parameters(), train.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            feedback = Feedback(
                step=step, total_steps=train.steps, loss=loss.item(), term_losses=term_losses, features=features,
                probe_before=probe_before,
                probe_after=self._criteria(probe) if probe is not None else None,
                batch_after=self._criteria(batch) if "batch_after" in requests else None,
                rouge_probe=self.rouge_probe if "rouge_probe" in requests else None,
            )
            self.strategy.observe(feedback)
            if step % train.log_every == 0 or step == train.steps - 1:
                record = self._log_record(step, loss.item(), term_losses, weights, features, scheduler)
                outcome.log.append(record)
                if on_log is not None:
                    on_log(record)
        self.student.eval()
        outcome.student = acc.unwrap_model(self.student)
        return outcome

    def _log_record(self, step, loss, term_losses, weights, features, scheduler) -> dict[str, Any]:
        record: dict[str, Any] = {"step": step, "loss": loss, "lr": scheduler.get_last_lr()[0]}
        record.update({f"term/{k}": v for k, v in term_losses.items()})
        for i, key in enumerate(self.terms):
            w = weights[i]
            record[f"weight/{key}"] = float(w) if w.dim() == 0 else features.batch_mean(w.detach().float())
        record.update({f"feature/{k}": v for k, v in features.to_batch_dict().items()})
        record.update({f"strategy/{k}": float(v) for k, v in self.strategy.log_scalars().items()})
        return record

"""One cell's distillation step: teacher and student forward, the fused divergence pass and a
weighting strategy mixing the terms; `Distiller.run` trains through the fixed loop
(`train/loop.py`) with the hooks the strategy and the training settings ask for."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arkd_bench.data.collate import IGNORE_INDEX, shift_for_next_token
from arkd_bench.method import build_method
from arkd_bench.models.vocabulary import trim_head, trim_logits
from arkd_bench.recipe.schema import MethodSpec, TrainSpec
from arkd_bench.train.hooks.checkpoint import Checkpoints, latest_checkpoint
from arkd_bench.train.hooks.online_data import data_session
from arkd_bench.train.loop import DistillOutcome, TrainingLoop, accumulating, check_accumulation
from arkd_bench.train.modes import eval_mode
from arkd_bench.train.optim import adamw_with_schedule, enable_gradient_checkpointing, training_loader
from arkd_bench.train.sharding import prepare_training
from arkd_bench.train.sft import TrainingDiverged
from arkd_bench.train.step_checks import check_step_outputs

# Criteria measured on a held-out probe batch for strategies that request feedback.
PROBE_CRITERIA = ("fkl", "rkl", "tvd")




def chunk_rows(vocab_size: int, logits_per_chunk: int = 1 << 19) -> int:
    """Rows per divergence chunk: about a fixed number of logits, so a small vocabulary
    gets big chunks (per-chunk overhead dominates otherwise) and a large one small chunks
    (bounded memory). Measured fastest on this CPU: 256 rows at V=2048, 16 at V=50257."""
    return max(16, logits_per_chunk // vocab_size)


def weighted_token_loss(values, weights):
    """sum_t w_t * value_t per token; weights are [T] or [T, *token_shape]."""
    if weights.dim() == 1:
        weights = weights.view(-1, *([1] * (values.dim() - 1)))
    weights = weights.to(device=values.device, dtype=values.dtype)
    return (weights * values).sum(0)


def student_head(student, accelerator):
    """The student's LM head as a `LinearHead`, for `train.fused_head`; a clear error where the
    head is more than a linear map or where several processes would need DDP's own forward.
    Under mixed precision its products run in the autocast dtype, as the dense path's head
    (an `nn.Linear` inside the prepared model's autocast) does."""
    import torch

    from arkd_bench.divergences import LinearHead

    if accelerator.num_processes > 1:
        raise ValueError("train.fused_head runs in a single process only (the pass reads the student's hidden "
                         "states past DDP's forward); set fused_head: false for multi-process runs")
    model = accelerator.unwrap_model(student)
    head = model.get_output_embeddings()
    config = model.config
    extra = [k for k in ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")
             if getattr(config, k, None) not in (None, 1, 1.0)]
    if type(head) is not torch.nn.Linear or extra or model.base_model is model:
        raise ValueError(f"train.fused_head needs a plain linear LM head on a base model; "
                         f"{type(model).__name__} has {type(head).__name__}"
                         + (f" and {', '.join(extra)} in its config" if extra else ""))
    return LinearHead(head.weight, head.bias, dtype=autocast_dtype(accelerator))


def autocast_dtype(accelerator):
    """The dtype `accelerator.autocast()` computes matrix products in, or None (no autocast)."""
    import torch

    device = accelerator.device.type
    with accelerator.autocast():
        return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None


def response_tokens(batch) -> int:
    """Tokens that carry loss in a training batch (next-token targets that are not ignored)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


@dataclass
class MicroStep:
    """One micro-batch's share of the step: its loss and term values as sums over its tokens
    divided by the step's token count (so the step's values are plain sums of these)."""

    loss: float
    term_losses: dict[str, float]
    weights: Any
    features: Any


class Distiller:
    """Holds what one cell's distillation needs; `run()` trains the student.

    `train_items` are encoded training examples (TrainingDataset.items); `teacher` is the
    TeacherSource (arkd_bench.teacher) that gives the teacher logits of their batches.
    `rouge_probe` is a callable(model) -> mean Rouge-L on a validation probe, for strategies
    that ask for it (and for dev evaluation)."""

    def __init__(self, *, student, teacher, tokenizer, train_items, method: MethodSpec, train: TrainSpec,
                 plugins, seed: int, accelerator, probe_items=(), rouge_probe=None, data_policy=None):
        from arkd_bench.teacher.items import IndexedDataset

        self.student, self.teacher, self.tokenizer = student, teacher, tokenizer
        self.dataset = IndexedDataset(train_items, tokenizer.pad_token_id)
        self.method, self.train, self.seed = method, train, seed
        self.accelerator = accelerator
        built = build_method(method, plugins, seed, data_policy=data_policy)
        self.terms, self.strategy = built.terms, built.strategy
        self.probe_items = list(probe_items)
        self.rouge_probe = rouge_probe
        self.data_policy = data_policy  # an online one replaces batches during training
        self.criteria = {name: plugins.create("divergence", name) for name in PROBE_CRITERIA}
        self.trial_updates = 0  # hypothetical updates measured for the strategy (before_update)
        self.probe_gradients = 0  # probe backward passes for the strategy ("probe_grad")
        self.lm_head = student_head(student, accelerator) if train.fused_head else None

    def _pass(self, model_logits, teacher_logits, mask, terms, target_ids=None, features=False):
        from arkd_bench.divergences import divergence_pass

        # A strategy built on AKL's gaps (greedy, arkd) declares the head mass it needs; the
        # features are computed only for a training step whose strategy reads them.
        settings = self.strategy.pass_settings
        mu, head = (self.train.mu, "paper") if settings.mu is None else (settings.mu, settings.head)
        chunk = self.train.chunk_size or chunk_rows(teacher_logits.shape[-1])
        return divergence_pass(student_logits=model_logits, teacher_logits=teacher_logits, mask=mask,
                               terms=terms, mu=mu, head=head, temperature=self.train.temperature, chunk_size=chunk,
                               target_ids=target_ids, lm_head=trim_head(self.lm_head, teacher_logits.shape[-1]),
                               features=features and settings.features)

    def _logits(self, batch):
        """(student, teacher, labels) at the next-token positions; the student's side is its
        logits, or with `train.fused_head` its last hidden states (the pass applies the head)."""
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.lm_head is None:
            student_logits = self.student(**inputs).logits
        else:
            # the body runs under the autocast the prepared model's forward would apply
            with self.accelerator.autocast():
                student_logits = self.accelerator.unwrap_model(self.student).base_model(**inputs).last_hidden_state
        teacher_logits = self.teacher.logits(batch, device=student_logits.device)
        # padded vocabularies of different sizes: compared over the shared rows (models/vocabulary.py)
        student_logits, teacher_logits = trim_logits(student_logits, teacher_logits, self.tokenizer,
                                                     None if self.lm_head is None else self.lm_head.vocab_size)
        student_logits, labels = shift_for_next_token(student_logits, batch["labels"])
        teacher_logits, _ = shift_for_next_token(teacher_logits, batch["labels"])
        return student_logits, teacher_logits, labels

    def _criteria(self, batches) -> dict[str, float]:
        """Alignment criteria of the current student on `batches` (means over their response
        tokens), measured in eval mode: dropout would make two measurements at the same weights
        differ by more than one update changes them."""
        import torch

        sums, count = dict.fromkeys(self.criteria, 0.0), 0
        with torch.no_grad(), eval_mode(self.student):
            for batch in batches:
                s, t, labels = self._logits(batch)
                mask = labels != IGNORE_INDEX
                out = self._pass(s, t, mask, self.criteria)
                for i, name in enumerate(self.criteria):
                    sums[name] += float(torch.where(mask, out.values[i].double(), 0.0).sum())
                count += int(mask.sum())
        return {name: total / max(count, 1) for name, total in sums.items()}

    def _probe_criterion_gradient(self, probe, params, scaler=None):
        """(c, dc/dparams) at the current weights, c the sum of the strategy's
        `probe_grad_criteria` (means over the probe's response tokens): one forward and backward
        of the probe in eval mode. Under fp16 the backward is of the scaled criterion, as the
        loss's is, and the gradient is unscaled here."""
        import torch

        names = tuple(self.strategy.probe_grad_criteria)
        if not names or any(n not in self.criteria for n in names):
            raise ValueError(f"weighting {self.method.weighting.name!r}: probe_grad_criteria {list(names)} must "
                             f"name some of {list(self.criteria)}")
        with eval_mode(self.student):
            s, t, labels = self._logits(probe)
            mask = labels != IGNORE_INDEX
            out = self._pass(s, t, mask, {n: self.criteria[n] for n in names})
            value = (out.values * mask).sum() / mask.sum().clamp_min(1)
            grads = torch.autograd.grad(value if scaler is None else scaler.scale(value), params, allow_unused=True)
        inv = 1.0 if scaler is None else 1.0 / scaler.get_scale()
        self.probe_gradients += 1
        return float(value.detach()), [torch.zeros_like(p) if g is None else g * inv for p, g in zip(params, grads)]

    def _micro_step(self, batch, step: int, n_tokens: int, term_grads=None) -> MicroStep:
        """Forward, divergence pass, weights and backward of one micro-batch.

        The loss is the micro-batch's token sum over `n_tokens`, the response tokens of the
        whole optimizer step (all micro-batches, all processes), so accumulation gives the
        gradient of one big batch whatever the response lengths. DDP (and FSDP's reduce-scatter)
        averages gradients over processes, hence the factor num_processes.
        """
        import torch
        import torch.nn.functional as F

        s_logits, t_logits, labels = self._logits(batch)
        mask = labels != IGNORE_INDEX
        # At temperature 1 the pass's own log-softmax gives the cross-entropy feature (no second N x V pass).
        plain = self.train.temperature == 1.0
        out = self._pass(s_logits, t_logits, mask, self.terms, target_ids=labels if plain else None, features=True)
        features = out.features
        features.step, features.total_steps = step, self.train.steps
        with torch.no_grad():
            ce = (-out.label_logp if plain else
                  F.cross_entropy(s_logits.detach().float().transpose(1, 2), labels.clamp_min(0), reduction="none"))
            features.ce = ce * mask
        weights = self.strategy.weights(features)
        check_step_outputs(terms=self.terms, values=out.values, features=features, strategy=self.strategy,
                           weights=weights, weighting=self.method.weighting.name,
                           student_logits=s_logits, teacher_logits=t_logits)
        scale = self.accelerator.num_processes / max(n_tokens, 1)
        loss_sum = (weighted_token_loss(out.values, weights) * mask).sum()
        term_sums = (out.values * mask).flatten(1).sum(1)
        term_losses = {key: float(term_sums[i].detach()) / max(n_tokens, 1) for i, key in enumerate(self.terms)}
        if not torch.isfinite(loss_sum):
            bad = [k for k, v in term_losses.items() if not torch.isfinite(torch.tensor(v))]
            raise TrainingDiverged(f"step {step}: loss is {loss_sum.item()}; non-finite terms: "
                                   + (", ".join(bad) if bad else "none (the weighted sum overflowed)"))
        if term_grads is None:
            # accelerate's backward divides by the accumulation steps (DeepSpeed's engine does the
            # same); this loss is already normalised by the whole step's tokens
            self.accelerator.backward(loss_sum * (scale * self.accelerator.gradient_accumulation_steps))
        else:
            if weights.dim() != 1:
                raise ValueError(f"weighting {self.method.weighting.name!r} requests trial updates or probe "
                                 "gradients, which keep each term's gradient apart and need one weight per term "
                                 f"and batch; it returned weights of shape {tuple(weights.shape)}")
            term_grads.backward([term_sums[i] * scale for i in range(len(self.terms))], weights.tolist())
        return MicroStep(loss_sum.item() / max(n_tokens, 1), term_losses, weights, features)

    def run(self, on_log: Callable[[dict[str, Any]], None] | None = None, checkpoint_dir=None,
            say: Callable[[str], None] | None = None) -> DistillOutcome:
        """Prepare the student, optimizer and loader; train them in the loop with this run's hooks.
        With `train.checkpoint_every`, checkpoints go to `checkpoint_dir` (the cell's folder), and
        training resumes from the newest one found there (`say` tells so)."""
        with accumulating(self.accelerator, self.train.grad_accum):
            return self._run(on_log, checkpoint_dir, say)

    def _run(self, on_log, checkpoint_dir, say) -> DistillOutcome:
        import torch

        acc, train = self.accelerator, self.train
        torch.manual_seed(self.seed)
        loader = training_loader(self.dataset, train.batch_size, self.seed)
        if train.gradient_checkpointing:
            enable_gradient_checkpointing(self.student)
        self.student, optimizer, loader, scheduler = prepare_training(acc, train.sharding, self.student, loader, (
            lambda model: adamw_with_schedule(model, train.lr, train.weight_decay, train.warmup_steps, train.steps,
                                              train.optimizer)))
        check_accumulation(acc, train.grad_accum)
        data = data_session(self, acc)
        if self.teacher.runs_online or data is not None:  # an online data policy's batches carry no index
            # placed already in a run (run/placement.py); one handed in directly gets device and eval mode here
            self.teacher.to(acc.device)
        probe_batch = self._probe_batch(acc)
        loop = TrainingLoop(self, optimizer, scheduler, loader)
        hooks = training_hooks(self, probe_batch, data, on_log)
        if not (train.checkpoint_every and checkpoint_dir is not None):
            return loop.run(hooks)
        start, resume = latest_checkpoint(checkpoint_dir, train.steps) or (0, None)
        if resume is not None and say is not None:
            say(f"resumed from step {start} ({resume})")
        # last: the step's log record is written before the checkpoint that keeps it
        hooks.append(Checkpoints(checkpoint_dir, train.checkpoint_every, train.keep_checkpoints, resume))
        return loop.run(hooks, start_step=start)

    def _probe_batch(self, acc):
        """The probe batch with its teacher logits where the strategy asks ("probe", "probe_grad")."""
        from arkd_bench.data.collate import collate_for_training

        requests = self.strategy.feedback_requests
        probe_batch = None
        if "probe" in requests or "probe_grad" in requests:
            if not self.probe_items:
                raise ValueError(f"weighting {self.method.weighting.name!r} needs a probe batch: "
                                 "the dataset has no validation examples")
            probe_batch = collate_for_training(self.probe_items, self.tokenizer.pad_token_id)
            probe_batch = {k: v.to(acc.device) for k, v in probe_batch.items()}
            # The probe is measured (or differentiated) every step; its teacher side never changes.
            probe_batch["teacher_logits"] = self.teacher.to(acc.device).forward(probe_batch)
        return probe_batch

    def _step_tokens(self, micro_batches) -> int:
        """Response tokens of the whole optimizer step, over micro-batches and processes."""
        local = sum(response_tokens(b) for b in micro_batches)
        if self.accelerator.num_processes == 1:
            return local
        import torch
        return int(self.accelerator.reduce(torch.tensor(local, device=self.accelerator.device), reduction="sum"))


def training_hooks(distiller, probe_batch, data, on_log) -> list:
    """The side features this run needs, in the order the loop tells them: the online data
    session first (the others see its batches), the log records last (the others add to them)."""
    from arkd_bench.train.hooks.best_student import BestStudent
    from arkd_bench.train.hooks.criteria import CriteriaFeedback
    from arkd_bench.train.hooks.dev_eval import DevEvaluation
    from arkd_bench.train.hooks.log_records import LogRecords
    from arkd_bench.train.hooks.online_data import OnlineData
    from arkd_bench.train.hooks.probe_gradient import ProbeGradientFeedback
    from arkd_bench.train.hooks.rouge import RougeProbeFeedback
    from arkd_bench.train.hooks.trials import TermGradientUpdates

    strategy, train = distiller.strategy, distiller.train
    requests = strategy.feedback_requests
    probe = probe_batch if "probe" in requests else None  # whose criteria are measured
    hooks = [OnlineData(data)] if data is not None else []
    if strategy.observes_criteria:
        hooks.append(CriteriaFeedback(probe))
    if "trial" in requests or "probe_grad" in requests:
        hooks.append(TermGradientUpdates("trial" in requests, probe))
    if "probe_grad" in requests:
        hooks.append(ProbeGradientFeedback(probe_batch))
    if "rouge_probe" in requests:
        hooks.append(RougeProbeFeedback(distiller.rouge_probe))
    if train.eval_every:
        hooks.append(DevEvaluation(distiller.rouge_probe, train.eval_every))
    if train.select_best:  # listens to the dev evaluation's on_evaluate
        hooks.append(BestStudent())
    return [*hooks, LogRecords(on_log)]

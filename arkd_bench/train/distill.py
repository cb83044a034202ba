"""The one distillation loop: teacher and student forward, the fused divergence pass,
a weighting strategy mixing the terms, and an accelerate-driven update."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arkd_bench.plugin_output import check_step_outputs
from arkd_bench.recipe.schema import MethodSpec, TrainSpec
from arkd_bench.train.optim import adamw_with_schedule, forever, shifted, training_loader
from arkd_bench.train.sft import TrainingDiverged
from arkd_bench.train.trial import TermGradients, TrialUpdate, active_scaler, eval_mode, first_order_slopes

# Criteria measured on a held-out probe batch for strategies that request feedback.
PROBE_CRITERIA = ("fkl", "rkl", "tvd")


@dataclass
class DistillOutcome:
    student: Any
    strategy: Any
    log: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] | None = None  # an online data policy's summary (generation cost)


def seeded_options(plugins, weighting, seed: int) -> dict[str, Any]:
    """A strategy with a `seed` option (arkd's policy) gets the recipe's value (default 0) plus
    the cell's training seed, so training seeds vary the policy's draws too."""
    options = dict(weighting.options)
    model = plugins.registry("weighting").get(weighting.name).options_model
    if model is not None and "seed" in model.model_fields:
        options["seed"] = options.get("seed", 0) + seed
    return options


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
    return int((batch["labels"][:, 1:] != -100).sum())


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
    that ask for it.
    """

    def __init__(self, *, student, teacher, tokenizer, train_items, method: MethodSpec, train: TrainSpec,
                 plugins, seed: int, accelerator, probe_items=(), rouge_probe=None, data_policy=None):
        from arkd_bench.teacher.items import IndexedDataset

        self.student, self.teacher, self.tokenizer = student, teacher, tokenizer
        self.dataset = IndexedDataset(train_items, tokenizer.pad_token_id)
        self.method, self.train, self.seed = method, train, seed
        self.accelerator = accelerator
        self.terms = {t.key: plugins.create("divergence", t.name, **t.options) for t in method.objective}
        self.strategy = plugins.create("weighting", method.weighting.name, terms=list(self.terms),
                                       directions=[d.direction for d in self.terms.values()],
                                       **seeded_options(plugins, method.weighting, seed))
        self.probe_items = list(probe_items)
        self.rouge_probe = rouge_probe
        self.data_policy = data_policy  # an online one replaces batches during training
        self.criteria = {name: plugins.create("divergence", name) for name in PROBE_CRITERIA}
        self.trial_updates = 0  # hypothetical updates measured for the strategy (before_update)
        self.probe_gradients = 0  # probe backward passes for the strategy ("probe_grad")
        self.lm_head = student_head(student, accelerator) if train.fused_head else None

    def _pass(self, model_logits, teacher_logits, mask, terms, target_ids=None):
        from arkd_bench.divergences import divergence_pass

        # A strategy built on AKL's gaps (greedy, arkd) decides the head mass it needs.
        mu = getattr(self.strategy, "akl_mu", None)
        head = getattr(self.strategy, "akl_head", "paper") if mu is not None else "paper"
        mu = self.train.mu if mu is None else mu  # official mu may be 0
        chunk = self.train.chunk_size or chunk_rows(teacher_logits.shape[-1])
        return divergence_pass(student_logits=model_logits, teacher_logits=teacher_logits, mask=mask,
                               terms=terms, mu=mu, head=head, temperature=self.train.temperature, chunk_size=chunk,
                               target_ids=target_ids, lm_head=self.lm_head)

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
        student_logits, labels = shifted(student_logits, batch["labels"])
        teacher_logits, _ = shifted(teacher_logits, batch["labels"])
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
                mask = labels != -100
                out = self._pass(s, t, mask, self.criteria)
                for i, name in enumerate(self.criteria):
                    sums[name] += float(torch.where(mask, out.values[i].double(), 0.0).sum())
                count += int(mask.sum())
        return {name: total / max(count, 1) for name, total in sums.items()}

    def _probe_gradient(self, probe, term_grads: TermGradients, optimizer):
        """The update's first-order effect on the probe criterion (Feedback.probe_grad), against
        the gradient now installed for the update; None when that gradient is not finite."""
        from arkd_bench.weighting.base import ProbeGradient

        started = time.perf_counter()
        value, probe_grad = self._probe_criterion_gradient(probe, term_grads.params, term_grads.scaler)
        step_grad = [p.grad for p in term_grads.params]
        slopes = first_order_slopes(term_grads, probe_grad, step_grad, optimizer, self.train.grad_clip)
        held = first_order_slopes(term_grads, probe_grad, step_grad, optimizer, self.train.grad_clip,
                                  hold_preconditioner=True)
        if slopes is None or held is None:
            return None
        return ProbeGradient(slopes=dict(zip(self.terms, slopes[0])), update=slopes[1], criterion=value,
                             held=dict(zip(self.terms, held[0])), seconds=time.perf_counter() - started)

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
            mask = labels != -100
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
        gradient of one big batch whatever the response lengths. DDP averages gradients over
        processes, hence the factor num_processes.
        """
        import torch
        import torch.nn.functional as F

        s_logits, t_logits, labels = self._logits(batch)
        mask = labels != -100
        # At temperature 1 the pass's own log-softmax gives the cross-entropy feature (no second N x V pass).
        plain = self.train.temperature == 1.0
        out = self._pass(s_logits, t_logits, mask, self.terms, target_ids=labels if plain else None)
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
            self.accelerator.backward(loss_sum * scale)
        else:
            if weights.dim() != 1:
                raise ValueError(f"weighting {self.method.weighting.name!r} requests trial updates or probe "
                                 "gradients, which keep each term's gradient apart and need one weight per term "
                                 f"and batch; it returned weights of shape {tuple(weights.shape)}")
            term_grads.backward([term_sums[i] * scale for i in range(len(self.terms))], weights.tolist())
        return MicroStep(loss_sum.item() / max(n_tokens, 1), term_losses, weights, features)

    def run(self, on_log: Callable[[dict[str, Any]], None] | None = None) -> DistillOutcome:
        import torch

        from arkd_bench.data.collate import collate_for_training
        from arkd_bench.weighting import Feedback
        from arkd_bench.weighting.base import TrialResult

        acc, train = self.accelerator, self.train
        torch.manual_seed(self.seed)
        loader = training_loader(self.dataset, train.batch_size, self.seed)
        optimizer, scheduler = adamw_with_schedule(self.student, train.lr, train.weight_decay,
                                                   train.warmup_steps, train.steps)
        self.student, optimizer, loader, scheduler = acc.prepare(self.student, optimizer, loader, scheduler)
        data = self._data_session(acc)
        if self.teacher.runs_online or data is not None:  # an online data policy's batches carry no index
            self.teacher.to(acc.device)
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
        probe = probe_batch if "probe" in requests else None  # whose criteria are measured
        rouge_probe = None
        if "rouge_probe" in requests:
            def rouge_probe() -> float:
                with eval_mode(self.student):
                    return self.rouge_probe(acc.unwrap_model(self.student))
        trials, slopes = "trial" in requests, "probe_grad" in requests
        if (trials or slopes) and acc.num_processes > 1:
            raise ValueError(f"weighting {self.method.weighting.name!r} requests trial updates or probe gradients, "
                             "which keep each term's gradient apart and run in a single process only")
        clip = None
        if train.grad_clip is not None:
            clip = lambda: acc.clip_grad_norm_(self.student.parameters(), train.grad_clip)  # noqa: E731
        outcome = DistillOutcome(student=None, strategy=self.strategy)
        best = _BestStudent() if train.select_best else None
        batches = forever(loader)
        self.student.train()
        probe_after = None
        for step in range(train.steps):
            micro_batches = [next(batches) for _ in range(train.grad_accum)]
            if data is not None:  # an online data policy decides what each micro-batch holds
                micro_batches = [data.next_batch(batch, step) for batch in micro_batches]
            n_tokens = self._step_tokens(micro_batches)
            # under fp16 the terms' gradients are of the scaled losses, as accelerate's backward's are
            term_grads = (TermGradients(self.student.parameters(), len(self.terms), scaler=active_scaler(optimizer))
                          if trials or slopes else None)
            micro = []
            for k, batch in enumerate(micro_batches):
                # Skip the gradient all-reduce on all but the last micro-batch.
                sync = contextlib.nullcontext() if k == train.grad_accum - 1 else acc.no_sync(self.student)
                with sync:
                    micro.append(self._micro_step(batch, step, n_tokens, term_grads))
            loss = sum(m.loss for m in micro)
            term_losses = {key: sum(m.term_losses[key] for m in micro) for key in self.terms}
            if acc.num_processes > 1:  # each process summed its share of the step's tokens
                loss, term_losses = _sum_across_processes(acc, loss, term_losses)
            weights, features = micro[-1].weights, micro[-1].features
            def measured(probe_now=None) -> TrialResult:
                """The criteria the strategy asked for: probe batch and/or this step's batches
                (`probe_now`: the probe's criteria at the current weights, when already known)."""
                if probe is not None and probe_now is None:
                    probe_now = self._criteria([probe])
                return TrialResult(probe=probe_now,
                                   batch=self._criteria(micro_batches) if "batch_after" in requests else None)

            observed = measured if self.strategy.observes_criteria else (lambda probe_now=None: TrialResult())
            # Nothing changes the weights between the last step's "after" and this step's
            # "before" (trials restore them exactly), and eval mode is deterministic: the probe
            # is not measured twice at the same weights.
            before = observed(probe_after)
            chosen = None
            if trials:
                trial = TrialUpdate(term_grads, optimizer, clip)
                chosen = self.strategy.before_update(
                    lambda w: trial.run(w, measured))
                self.trial_updates += trial.calls
            if chosen is not None:
                weights = torch.as_tensor(chosen, dtype=torch.float32)
                term_grads.install(term_grads.combined(weights.tolist()))
            elif term_grads is not None:
                term_grads.install(term_grads.actual)
            # at the pre-update weights, against the gradient the update is about to use
            probe_grad = self._probe_gradient(probe_batch, term_grads, optimizer) if slopes else None
            if clip is not None:
                clip()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if data is not None:
                data.after_step(step)
            after = observed()
            probe_after = after.probe
            self.strategy.observe(Feedback(
                step=step, total_steps=train.steps, loss=loss, term_losses=term_losses, features=features,
                probe_before=before.probe, probe_after=after.probe,
                batch_before=before.batch, batch_after=after.batch,
                rouge_probe=rouge_probe, probe_grad=probe_grad,
            ))
            dev = None
            if train.eval_every and ((step + 1) % train.eval_every == 0 or step == train.steps - 1):
                model = acc.unwrap_model(self.student)
                dev = self.rouge_probe(model)
                self.student.train()
                if best is not None:
                    best.offer(model, dev, step)
            if step % train.log_every == 0 or step == train.steps - 1 or dev is not None:
                record = self._log_record(step, loss, term_losses, weights, features, scheduler)
                if data is not None:
                    record.update(data.log_scalars())
                if dev is not None:
                    record["dev/rougeL"] = dev
                outcome.log.append(record)
                if on_log is not None:
                    on_log(record)
        self.student.eval()
        outcome.student = acc.unwrap_model(self.student)
        outcome.data = data.summary() if data is not None else None
        if best is not None:
            best.restore(outcome.student)
            outcome.log.append({"step": best.step, "selected": True, "dev/rougeL": best.score})
        return outcome

    def _data_session(self, acc):
        """The session an online data policy works in, or None (its batches are the loader's)."""
        if self.data_policy is None or not self.data_policy.online:
            return None
        from arkd_bench.data_policy.session import DataSession

        return DataSession(policy=self.data_policy, student=lambda: acc.unwrap_model(self.student),
                           tokenizer=self.tokenizer, max_length=self.train.max_length, device=acc.device,
                           seed=self.seed, total_steps=self.train.steps, probe_items=self.probe_items)

    def _step_tokens(self, micro_batches) -> int:
        """Response tokens of the whole optimizer step, over micro-batches and processes."""
        import torch

        local = sum(response_tokens(b) for b in micro_batches)
        if self.accelerator.num_processes == 1:
            return local
        total = self.accelerator.reduce(torch.tensor(local, device=self.accelerator.device), reduction="sum")
        return int(total)

    def _log_record(self, step, loss, term_losses, weights, features, scheduler) -> dict[str, Any]:
        record: dict[str, Any] = {"step": step, "loss": loss, "lr": scheduler.get_last_lr()[0]}
        record.update({f"term/{k}": v for k, v in term_losses.items()})
        for i, key in enumerate(self.terms):
            w = weights[i]
            record[f"weight/{key}"] = float(w) if w.dim() == 0 else features.batch_mean(w.detach().float())
        record.update({f"feature/{k}": v for k, v in features.to_batch_dict().items()})
        record.update({f"strategy/{k}": float(v) for k, v in self.strategy.log_scalars().items()})
        return record


def _sum_across_processes(acc, loss: float, terms: dict[str, float]):
    import torch

    values = acc.reduce(torch.tensor([loss, *terms.values()], device=acc.device), reduction="sum").tolist()
    return values[0], dict(zip(terms, values[1:]))


class _BestStudent:
    """The weights of the best dev score so far (a CPU copy; small students only)."""

    def __init__(self) -> None:
        self.score, self.step, self.state = float("-inf"), -1, None

    def offer(self, model, score: float, step: int) -> None:
        if score > self.score:
            self.score, self.step = score, step
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def restore(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)

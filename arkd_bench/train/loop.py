"""The fixed training loop: each step draws its micro-batches, runs their forward, divergence
pass, weights and backward (the Distiller's micro-step), updates the student, and tells the
hooks at named events. Side features (probes, trial updates, dev evaluation, logging, online
data) live in hooks (`arkd_bench.train.hooks`); adding one never changes this loop."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from arkd_bench.train.hooks.base import StepState, TrainingHook
from arkd_bench.train.optim import forever


@dataclass
class DistillOutcome:
    student: Any
    strategy: Any
    log: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] | None = None  # an online data policy's summary (generation cost)
    prepared: Any = None  # the student as prepared (wrapped, maybe sharded): for accelerator.get_state_dict


class TrainingLoop:
    """Runs `distiller.train.steps` steps of a prepared student, optimizer, scheduler and loader.

    `distiller` supplies the method's side of a step (`_step_tokens`, `_micro_step`, the
    strategy). Hooks are told in list order at each event, so a hook that reads what another
    wrote comes after it."""

    def __init__(self, distiller, optimizer, scheduler, loader) -> None:
        self.distiller, self.optimizer, self.scheduler, self.loader = distiller, optimizer, scheduler, loader
        self.train, self.accelerator, self.strategy = distiller.train, distiller.accelerator, distiller.strategy
        self.clip = None  # clips the gradient the update is about to use (train.grad_clip)
        if self.train.grad_clip is not None:
            acc, norm = self.accelerator, self.train.grad_clip
            self.clip = lambda: acc.clip_grad_norm_(self.student.parameters(), norm)
        self.hooks: list[TrainingHook] = []
        self.outcome = DistillOutcome(student=None, strategy=distiller.strategy)

    @property
    def student(self):
        return self.distiller.student

    def fire(self, event: str, *args) -> None:
        """Tell every hook about `event` (a TrainingHook method name), in list order."""
        for hook in self.hooks:
            getattr(hook, event)(self, *args)

    def run(self, hooks: list[TrainingHook], start_step: int = 0) -> DistillOutcome:
        """Train from `start_step` (a resumed run: a hook restores the state of that step at
        `on_train_begin`) to the last step."""
        self.hooks = list(hooks)
        batches = forever(self.loader)
        # Redraw the batches of the steps already done, so the loader's sampler (and the epoch's
        # shuffle) is where an uninterrupted run has it; the RNG states are restored after this.
        for _ in range(start_step * self.train.grad_accum):
            next(batches)
        self.fire("on_train_begin")
        self.student.train()
        for step in range(start_step, self.train.steps):
            self._step(step, batches)
        self.student.eval()
        self.outcome.student = self.accelerator.unwrap_model(self.student)
        self.outcome.prepared = self.student
        self.fire("on_train_end")
        return self.outcome

    def _step(self, step: int, batches) -> None:
        from arkd_bench.weighting import Feedback

        d, acc, train = self.distiller, self.accelerator, self.train
        state = StepState(step=step, micro_batches=[next(batches) for _ in range(train.grad_accum)])
        self.fire("on_step_begin", state)
        state.n_tokens = d._step_tokens(state.micro_batches)
        micro = []
        for batch in state.micro_batches:
            # accelerate counts the micro-batches (see `accumulating`): the gradients are reduced
            # (and a DeepSpeed engine steps) on the step's last one only.
            with acc.accumulate(self.student):
                micro.append(d._micro_step(batch, step, state.n_tokens, state.term_grads))
        state.loss = sum(m.loss for m in micro)
        state.term_losses = {key: sum(m.term_losses[key] for m in micro) for key in d.terms}
        if acc.num_processes > 1:  # each process summed its share of the step's tokens
            state.loss, state.term_losses = _sum_across_processes(acc, state.loss, state.term_losses)
        state.weights, state.features = micro[-1].weights, micro[-1].features
        self.fire("on_backward_end", state)
        self.fire("on_pre_optimizer_step", state)
        if self.clip is not None:
            self.clip()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.fire("on_optimizer_step", state)
        self.strategy.observe(Feedback(step=step, total_steps=train.steps, loss=state.loss,
                                       term_losses=state.term_losses, features=state.features, **state.feedback))
        self.fire("on_step_end", state)


@contextlib.contextmanager
def accumulating(accelerator, micro_batches: int):
    """Gradient accumulation through accelerate, for one training run: `accumulate` skips the
    gradient reduction on all but every `micro_batches`-th micro-batch, the prepared optimizer
    and scheduler step only on that one, and a DeepSpeed engine gets the same count (set before
    `prepare`, which reads it). The count restarts here, and the end of an epoch does not force
    a reduction (the loop cycles through its loader, and a step's micro-batches may span two
    epochs). The accelerator's previous settings come back after, for the SFT stages that
    share it."""
    state = accelerator.gradient_state
    before, counted = dict(state.plugin_kwargs), accelerator.step
    state.plugin_kwargs.update({"num_steps": micro_batches, "sync_with_dataloader": False})
    accelerator.step = 0
    try:
        yield
    finally:
        state.plugin_kwargs.clear()
        state.plugin_kwargs.update(before)
        accelerator.step = counted


def check_accumulation(accelerator, micro_batches: int) -> None:
    """After `prepare`: a DeepSpeed config's own gradient_accumulation_steps wins there."""
    if accelerator.gradient_accumulation_steps != micro_batches:
        raise ValueError(f"train.grad_accum is {micro_batches} but the DeepSpeed config's gradient_accumulation_steps "
                         f"is {accelerator.gradient_accumulation_steps}: set it to auto (or to {micro_batches})")


def _sum_across_processes(acc, loss: float, terms: dict[str, float]):
    import torch

    values = acc.reduce(torch.tensor([loss, *terms.values()], device=acc.device), reduction="sum").tolist()
    return values[0], dict(zip(terms, values[1:]))

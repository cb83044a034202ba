"""Dev evaluation every `train.eval_every` steps (and at the last step), and with
`train.select_best` the student of the best dev score handed back at the end."""
from __future__ import annotations

from arkd_bench.train.hooks.base import StepState, TrainingHook


class DevEvaluation(TrainingHook):
    """`score`: callable(model) -> mean Rouge-L on the dev probe; logged as dev/rougeL."""

    def __init__(self, score, every: int, select_best: bool) -> None:
        self.score, self.every = score, every
        self.best = _BestStudent() if select_best else None

    def on_step_end(self, loop, state: StepState) -> None:
        step = state.step
        if (step + 1) % self.every == 0 or step == loop.train.steps - 1:
            model = loop.accelerator.unwrap_model(loop.student)
            state.dev = self.score(model)
            loop.student.train()
            state.log_now = True
            loop.fire("on_evaluate", state, state.dev)
            if self.best is not None:
                self.best.offer(model, state.dev, step)

    def on_log(self, loop, state: StepState, record) -> None:
        if state.dev is not None:
            record["dev/rougeL"] = state.dev

    def on_train_end(self, loop) -> None:
        if self.best is not None:
            self.best.restore(loop.outcome.student)
            loop.outcome.log.append({"step": self.best.step, "selected": True, "dev/rougeL": self.best.score})


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

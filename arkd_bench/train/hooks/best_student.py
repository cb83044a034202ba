"""With `train.select_best`, the student of the best dev score is handed back at the end (and
the log says which step it came from); it listens to the dev evaluation's `on_evaluate`."""
from __future__ import annotations

from arkd_bench.train.hooks.base import StepState, TrainingHook


class BestStudent(TrainingHook):
    """The weights of the best dev score so far (a CPU copy; small students only)."""

    def __init__(self) -> None:
        self.score, self.step, self.state = float("-inf"), -1, None

    def on_evaluate(self, loop, state: StepState, score: float) -> None:
        if score > self.score:
            self.score, self.step = score, state.step
            model = loop.accelerator.unwrap_model(loop.student)
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def on_train_end(self, loop) -> None:
        if self.state is not None:
            loop.outcome.student.load_state_dict(self.state)
        loop.outcome.log.append({"step": self.step, "selected": True, "dev/rougeL": self.score})

    def state_dict(self):
        return {"score": self.score, "step": self.step, "state": self.state}

    def load_state_dict(self, state) -> None:
        self.score, self.step, self.state = state["score"], state["step"], state["state"]

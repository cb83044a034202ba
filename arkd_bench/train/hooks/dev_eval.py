"""Dev evaluation every `train.eval_every` steps (and at the last step): the score is logged as
dev/rougeL and told to the hooks at `on_evaluate` (best-student selection listens there)."""
from __future__ import annotations

from arkd_bench.train.hooks.base import StepState, TrainingHook


class DevEvaluation(TrainingHook):
    """`score`: callable(model) -> mean Rouge-L on the dev probe."""

    def __init__(self, score, every: int) -> None:
        self.score, self.every = score, every

    def on_step_end(self, loop, state: StepState) -> None:
        step = state.step
        if (step + 1) % self.every == 0 or step == loop.train.steps - 1:
            from arkd_bench.train.sharding import full_parameters

            with full_parameters(loop.student):  # a sharded student generates with its parameters gathered
                state.dev = self.score(loop.accelerator.unwrap_model(loop.student))
            loop.student.train()
            state.log_now = True
            loop.fire("on_evaluate", state, state.dev)

    def on_log(self, loop, state: StepState, record) -> None:
        if state.dev is not None:
            record["dev/rougeL"] = state.dev

"""The Rouge-L probe for strategies that ask ("rouge_probe"): a callable in the step's Feedback,
so the strategy decides when to pay for it; it scores the student in eval mode."""
from __future__ import annotations

from arkd_bench.train.hooks.base import StepState, TrainingHook


class RougeProbeFeedback(TrainingHook):
    """`score`: callable(model) -> mean Rouge-L on a validation probe."""

    def __init__(self, score) -> None:
        self.score = score

    def on_optimizer_step(self, loop, state: StepState) -> None:
        state.feedback["rouge_probe"] = lambda: self.measure(loop)

    def measure(self, loop) -> float:
        from arkd_bench.train.modes import eval_mode
        from arkd_bench.train.sharding import full_parameters

        with eval_mode(loop.student), full_parameters(loop.student):
            return self.score(loop.accelerator.unwrap_model(loop.student))

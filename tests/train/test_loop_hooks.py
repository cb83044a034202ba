"""The training loop tells its hooks at named events, in order, and a hook can add to the log
without any change to the loop."""
from __future__ import annotations

import pytest

from arkd_bench.data.base import Example
from arkd_bench.data.collate import TrainingDataset
from arkd_bench.recipe.schema import MethodSpec, TrainSpec
from arkd_bench.testing import SAMPLE_TEXTS, tiny_gpt2
from arkd_bench.train.hooks.base import TrainingHook

STEP_EVENTS = ["on_step_begin", "on_backward_end", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end"]


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


class Recorder(TrainingHook):
    """Records every event it hears; adds a field to each log record."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def on_log(self, loop, state, record) -> None:
        self.events.append("on_log")
        record["recorder/step"] = state.step


def _recording(name: str):
    def event(self, loop, *args) -> None:
        self.events.append(name)
    return event


for _name in ["on_train_begin", *STEP_EVENTS, "on_evaluate", "on_train_end"]:
    setattr(Recorder, _name, _recording(_name))


def test_a_hook_hears_every_event_in_order_and_extends_the_log(tokenizer, builtin_plugins, monkeypatch):
    from accelerate import Accelerator

    import arkd_bench.train.distill as distill
    from arkd_bench.teacher.base import OnlineTeacher

    recorder = Recorder()
    build = distill.training_hooks
    monkeypatch.setattr(distill, "training_hooks", lambda *args: [recorder, *build(*args)])
    examples = [Example(prompt=f"Item {i}:", references=(SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)],)) for i in range(8)]
    method = MethodSpec.model_validate({"name": "m", "objective": ["fkl", "rkl"]})
    spec = TrainSpec.model_validate({"steps": 2, "batch_size": 4, "max_length": 64, "log_every": 1})
    d = distill.Distiller(student=tiny_gpt2(tokenizer, seed=1), teacher=OnlineTeacher(tiny_gpt2(tokenizer, seed=2)),
                          tokenizer=tokenizer, train_items=TrainingDataset(examples, tokenizer, 64).items,
                          method=method, train=spec, plugins=builtin_plugins, seed=0,
                          accelerator=Accelerator(cpu=True))
    outcome = d.run()
    step = [*STEP_EVENTS, "on_log"]  # no dev evaluation: on_evaluate is never told
    assert recorder.events == ["on_train_begin", *step, *step, "on_train_end"]
    assert [r["recorder/step"] for r in outcome.log] == [0, 1]

"""Gradient accumulation through accelerate's `accumulate`: the gradients are reduced (and a
DeepSpeed engine, which reads the count at `prepare`, steps) on each step's last micro-batch
only, also when a step's micro-batches span two epochs; the SFT stages sharing the
accelerator get its settings back."""
from __future__ import annotations

import pytest

from arkd_bench.data.collate import TrainingDataset
from arkd_bench.recipe.schema import MethodSpec, TrainSpec
from arkd_bench.teacher.base import OnlineTeacher
from arkd_bench.testing import tiny_gpt2
from arkd_bench.train.distill import Distiller
from helpers import examples_of_varied_length as examples


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


def test_only_each_steps_last_micro_batch_syncs_and_the_optimizer_steps_once_a_step(tokenizer, builtin_plugins):
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    method = MethodSpec.model_validate({"name": "m", "objective": ["fkl", "rkl"]})
    spec = TrainSpec.model_validate({"steps": 4, "batch_size": 4, "grad_accum": 3, "max_length": 96})
    items = TrainingDataset(examples(10), tokenizer, 96).items  # 3 micro-batches an epoch: steps span epochs
    d = Distiller(student=tiny_gpt2(tokenizer, seed=1), teacher=OnlineTeacher(tiny_gpt2(tokenizer, seed=2)),
                  tokenizer=tokenizer, train_items=items, method=method, train=spec, plugins=builtin_plugins,
                  seed=0, accelerator=acc)
    seen, micro_step = [], d._micro_step

    def recording(*args):
        seen.append((acc.sync_gradients, acc.gradient_accumulation_steps))
        return micro_step(*args)

    d._micro_step = recording
    outcome = d.run()
    assert seen == [(False, 3), (False, 3), (True, 3)] * 4
    optimizer = acc._optimizers[-1].optimizer
    assert {int(s["step"]) for s in optimizer.state.values()} == {4}  # AdamW stepped once a step
    assert acc._schedulers[-1].scheduler.last_epoch == 4
    assert acc.gradient_accumulation_steps == 1 and acc.gradient_state.sync_with_dataloader  # given back
    assert outcome.student is not None

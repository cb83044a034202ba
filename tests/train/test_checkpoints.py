"""Mid-cell checkpoints: a training stopped after a checkpoint and run again resumes from it to
the same log, weights and strategy state as an uninterrupted one; ARKD's state round-trips."""
from __future__ import annotations

import shutil

import pytest

from arkd_bench.data.collate import TrainingDataset
from arkd_bench.recipe.schema import MethodSpec, TrainSpec
from arkd_bench.testing import tiny_gpt2
from arkd_bench.train.hooks.checkpoint import checkpoints, latest_checkpoint
from tests.helpers import Killed, examples_of_varied_length, kill_at, untimed, weights_of

ARKD = {"name": "arkd", "options": {"update_every": 1, "warmup_steps": 1}}


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


def make_distiller(tokenizer, plugins, data=None, **train):
    """ARKD over FKL and RKL with dropout (so the torch RNG matters), 32 examples in batches of
    4: eight batches an epoch, so a resume at step 5 is mid-epoch and the run crosses an epoch."""
    from accelerate import Accelerator

    from arkd_bench.method import build_data_policy
    from arkd_bench.teacher.base import OnlineTeacher
    from arkd_bench.train.distill import Distiller

    student = tiny_gpt2(tokenizer, seed=1)
    student.config.resid_pdrop = student.config.embd_pdrop = student.config.attn_pdrop = 0.2
    student = type(student)(student.config)
    method = MethodSpec.model_validate({"name": "m", "objective": ["fkl", "rkl"], "weighting": ARKD,
                                        **({"data": data} if data else {})})
    spec = TrainSpec.model_validate({"steps": 12, "batch_size": 4, "max_length": 64, "log_every": 1,
                                     "lr": 0.01, **train})
    items = TrainingDataset(examples_of_varied_length(40), tokenizer, spec.max_length).items
    return Distiller(student=student, teacher=OnlineTeacher(tiny_gpt2(tokenizer, seed=2)), tokenizer=tokenizer,
                     train_items=items[:32], method=method, train=spec, plugins=plugins, seed=0,
                     accelerator=Accelerator(cpu=True), probe_items=items[32:],
                     data_policy=build_data_policy(method, plugins))


@pytest.mark.parametrize("data", [None, {"name": "student", "options": {"lmbda": 0.5, "max_new_tokens": 6}}],
                         ids=["ground_truth", "on_policy"])
def test_a_stopped_training_resumes_from_its_checkpoint_to_the_same_run(tokenizer, builtin_plugins, tmp_path,
                                                                        monkeypatch, data):
    """Stopped at step 7 after the checkpoint of step 5 (mid-epoch), then run again: the same
    log, weights and (with an online data policy) the same generated batches."""
    import torch

    import arkd_bench.train.distill as distill

    whole = make_distiller(tokenizer, builtin_plugins, data).run()

    build = distill.training_hooks
    monkeypatch.setattr(distill, "training_hooks", lambda *args: [kill_at(7), *build(*args)])
    with pytest.raises(Killed):
        make_distiller(tokenizer, builtin_plugins, data, checkpoint_every=5).run(checkpoint_dir=tmp_path)
    assert [step for step, _ in checkpoints(tmp_path)] == [5]
    monkeypatch.setattr(distill, "training_hooks", build)

    said = []
    resumed = make_distiller(tokenizer, builtin_plugins, data, checkpoint_every=5).run(checkpoint_dir=tmp_path,
                                                                                        say=said.append)
    assert said and said[0].startswith("resumed from step 5")
    assert untimed(resumed.log) == untimed(whole.log)
    expected = weights_of(whole.student)
    assert all(torch.equal(v, expected[k]) for k, v in weights_of(resumed.student).items())
    assert checkpoints(tmp_path) == []  # a finished training removes its checkpoints


def test_checkpoints_keep_only_the_newest_and_are_kept_when_asked(tokenizer, builtin_plugins, tmp_path):
    make_distiller(tokenizer, builtin_plugins, checkpoint_every=5, keep_checkpoints=True).run(checkpoint_dir=tmp_path)
    assert [step for step, _ in checkpoints(tmp_path)] == [10]
    assert latest_checkpoint(tmp_path, 12)[0] == 10
    (tmp_path / "checkpoint-11.tmp").mkdir()  # a save cut short is never resumed from
    assert latest_checkpoint(tmp_path, 12)[0] == 10
    make_distiller(tokenizer, builtin_plugins, checkpoint_every=5).run(checkpoint_dir=tmp_path / "other")
    (tmp_path / "other" / "checkpoint-3.tmp").mkdir()
    make_distiller(tokenizer, builtin_plugins, steps=2, checkpoint_every=5).run(checkpoint_dir=tmp_path / "other")
    assert list((tmp_path / "other").iterdir()) == []  # finished: no checkpoint left, whole or cut short


def test_arkd_state_round_trips_through_a_checkpoint(tokenizer, builtin_plugins, tmp_path):
    """A checkpoint saved at the end of a run and loaded into a fresh loop restores the ARKD
    strategy (policy, its optimizer, baselines, rewards) and the log exactly."""
    import torch

    from arkd_bench.train.hooks.checkpoint import load_checkpoint, save_checkpoint
    from arkd_bench.train.loop import TrainingLoop
    from arkd_bench.train.optim import adamw_with_schedule, training_loader

    def prepared_loop(d):
        optimizer, scheduler = adamw_with_schedule(d.student, d.train.lr, 0.0, 0, d.train.steps)
        loader = training_loader(d.dataset, d.train.batch_size, d.seed)
        d.student, optimizer, loader, scheduler = d.accelerator.prepare(d.student, optimizer, loader, scheduler)
        return TrainingLoop(d, optimizer, scheduler, loader)

    trained = make_distiller(tokenizer, builtin_plugins, steps=4)
    outcome = trained.run()
    loop = prepared_loop(trained)
    loop.outcome.log = list(outcome.log)
    saved = save_checkpoint(loop, tmp_path, 4)
    fresh = make_distiller(tokenizer, builtin_plugins, steps=4)
    assert not _same(fresh.strategy.state_dict()["policy"], trained.strategy.state_dict()["policy"])
    restored = prepared_loop(fresh)
    assert load_checkpoint(restored, saved) == 4
    before, after = trained.strategy.state_dict(), fresh.strategy.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert _same(before[key], after[key]), key
    assert restored.outcome.log == outcome.log
    assert all(torch.equal(a, b) for a, b in zip(trained.student.parameters(), fresh.student.parameters()))


def _same(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_checkpoint_settings_keep_cell_ids():
    """Checkpointing changes no number a cell computes, so turning it on keeps finished cells."""
    from pathlib import Path

    import yaml

    from arkd_bench.recipe.matrix import expand
    from arkd_bench.recipe.schema import Recipe

    raw = yaml.safe_load((Path(__file__).parents[1] / "fixtures" / "tiny.yaml").read_text())
    plain = expand(Recipe.model_validate(raw))
    raw["train"].update(checkpoint_every=10, keep_checkpoints=True)
    assert [c.id for c in expand(Recipe.model_validate(raw))] == [c.id for c in plain]

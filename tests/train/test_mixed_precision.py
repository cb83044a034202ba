"""Distillation under mixed precision, on CPU: trial updates under fp16 with a GradScaler
(the real update is the one a plain fp16 step makes; the scaler's state is not moved by trials;
overflowing steps are skipped as plain ones are), and the LM head inside the pass
(`train.fused_head`) under the same autocast as the dense path.

accelerate turns fp16 off on CPU (no autocast, no scaler); CPU autocast does have float16 and
torch has a CPU GradScaler, so the fp16 accelerator here is accelerate's own with those two
switched on: the prepared model's forward, `backward`, `clip_grad_norm_` and the prepared
optimizer's `step` then go through the scaler exactly as on a GPU.
"""
from __future__ import annotations

import pytest
import torch

from arkd_bench.data.collate import TrainingDataset, collate_for_training
from arkd_bench.recipe.schema import MethodSpec, TrainSpec
from arkd_bench.teacher.base import OnlineTeacher
from arkd_bench.testing import tiny_gpt2
from arkd_bench.train.distill import Distiller
from helpers import examples_of_varied_length as examples

FIXED = {"name": "fixed", "options": {"weights": [0.5, 0.5]}}


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    """accelerate keeps one process-wide state, which refuses a second precision: `accelerator`
    starts it afresh, and the tests after these get a fresh one too."""
    from accelerate.state import AcceleratorState

    yield
    AcceleratorState._reset_state(True)


def accelerator(precision: str, **scaler_options):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    acc = Accelerator(cpu=True, mixed_precision=precision)
    if precision == "fp16":
        assert acc.scaler is None and not acc.native_amp  # what accelerate does on CPU
        acc.native_amp = True
        acc.scaler = torch.amp.GradScaler("cpu", **scaler_options)
        acc.scaler.scale(torch.ones(()))  # initialised, as the SFT stage on the same accelerator leaves it
    return acc




def distiller(tokenizer, plugins, acc, weighting=FIXED, **train):
    method = MethodSpec.model_validate({"name": "m", "objective": ["fkl", "rkl"], "weighting": weighting})
    spec = TrainSpec.model_validate({"steps": 1, "batch_size": 4, "max_length": 96, "lr": 0.01, **train})
    items = TrainingDataset(examples(32), tokenizer, 96).items
    probe = TrainingDataset(examples(40)[32:], tokenizer, 96).items
    return Distiller(student=tiny_gpt2(tokenizer, seed=1),
                     teacher=OnlineTeacher(tiny_gpt2(tokenizer, n_layer=2, seed=2)),
                     tokenizer=tokenizer, train_items=items, method=method, train=spec, plugins=plugins, seed=0,
                     accelerator=acc, probe_items=probe)


def one_step(tokenizer, plugins, precision, weighting, **scaler_options):
    """(parameter change of one optimizer step, the scaler, the prepared optimizer, trials run)."""
    acc = accelerator(precision, **scaler_options)
    d = distiller(tokenizer, plugins, acc, weighting)
    student = d.student
    before = torch.cat([p.detach().flatten().clone() for p in student.parameters()])
    d.run()
    delta = torch.cat([p.detach().flatten() for p in student.parameters()]) - before
    return delta, acc.scaler, acc._optimizers[-1], d.trial_updates


def relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


ARKD = {"name": "arkd", "options": {"update_every": 1, "warmup_steps": 0}}


@pytest.mark.parametrize("weighting, without_trials", [
    ({"name": "lookahead", "options": {"candidates": [0.5]}}, FIXED),
    ({"name": "arkd", "options": {"paired_alpha": 0.5, **ARKD["options"]}}, ARKD),
], ids=["lookahead", "arkd-paired"])
def test_fp16_trial_strategies_make_the_update_a_plain_step_makes(tokenizer, builtin_plugins, weighting,
                                                                  without_trials):
    """The step with trial updates under fp16 moves the weights as the same step in fp32 does, and
    as the plain fp16 step with the same weights (one backward of the weighted loss) does. Before,
    the trials' gradients were of the unscaled loss and the scaler divided them by the scale
    again: the optimizer saw 1/65536 (or less) of the gradient."""
    fp32, _, _, trials = one_step(tokenizer, builtin_plugins, "no", weighting)
    assert trials >= 1
    fp16, scaler, optimizer, _ = one_step(tokenizer, builtin_plugins, "fp16", weighting)
    plain, _, _, _ = one_step(tokenizer, builtin_plugins, "fp16", without_trials)
    assert not optimizer.step_was_skipped
    assert relative(fp16, fp32) < 0.03  # fp16's rounding; before: 0.97
    assert relative(fp16, plain) < 0.03
    assert float(fp16.norm()) == pytest.approx(float(fp32.norm()), rel=0.02)


def test_trials_leave_the_scale_where_a_plain_step_leaves_it(tokenizer, builtin_plugins):
    """Every optimizer step calls the scaler's update(): a trial's would grow the scale (or back it
    off) on its own. With growth every step, three trials took 65536 to 2**20; now the scale after
    the step is the plain step's."""
    lookahead = {"name": "lookahead", "options": {"candidates": [0.0, 0.5, 1.0]}}
    _, scaler, _, trials = one_step(tokenizer, builtin_plugins, "fp16", lookahead, growth_interval=1)
    _, plain, _, _ = one_step(tokenizer, builtin_plugins, "fp16", FIXED, growth_interval=1)
    assert trials == 3
    assert plain.get_scale() == 2.0 ** 17  # one successful step
    assert scaler.get_scale() == plain.get_scale()
    assert scaler._get_growth_tracker() == plain._get_growth_tracker()


def test_an_overflowing_fp16_step_is_skipped_with_trials_as_without(tokenizer, builtin_plugins):
    """A scale so large that the scaled gradients overflow: the plain step is skipped and the
    scale halved; so is the step whose gradients came through trials (each trial skipped too)."""
    lookahead = {"name": "lookahead", "options": {"candidates": [0.0, 0.5, 1.0]}}
    huge = 2.0 ** 120
    for weighting in (FIXED, lookahead):
        delta, scaler, optimizer, _ = one_step(tokenizer, builtin_plugins, "fp16", weighting, init_scale=huge)
        assert optimizer.step_was_skipped
        assert torch.count_nonzero(delta) == 0
        assert not optimizer.optimizer.state  # AdamW never stepped
        assert scaler.get_scale() == huge / 2


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_head_inside_the_pass_runs_under_the_dense_paths_autocast(tokenizer, builtin_plugins, precision):
    """train.fused_head under mixed precision: the student's body runs in the autocast dtype (it
    used to run in float32, past the prepared forward's autocast), the head's products too, so
    one micro-step gives the dense path's values and gradients."""
    results = []
    for fused in (False, True):
        acc = accelerator(precision)
        d = distiller(tokenizer, builtin_plugins, acc, fused_head=fused)
        d.student = acc.prepare(d.student)
        model = acc.unwrap_model(d.student)
        seen = []
        model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        batch = collate_for_training(d.dataset.items[:8], tokenizer.pad_token_id)
        step = d._micro_step(batch, 0, d._step_tokens([batch]))
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((step.term_losses, grads))
        assert seen == [torch.bfloat16 if precision == "bf16" else torch.float16]
        if fused:
            assert d.lm_head.dtype == seen[0]
    (dense_terms, dense_grads), (fused_terms, fused_grads) = results
    assert fused_terms == pytest.approx(dense_terms, rel=1e-6)
    assert fused_grads.keys() == dense_grads.keys()
    for name, g in dense_grads.items():
        assert relative(fused_grads[name], g) < 1e-4, name  # before: 4e-3 in bf16


def test_fp16_probe_gradients_unscale_like_the_update(tokenizer, builtin_plugins):
    """hypergrad under fp16: the terms' gradients are kept scaled and the probe's backward is
    scaled too; the slopes unscale both once, so they are fp32's up to fp16 rounding (before a
    consistent unscale they would be off by the scale, 65536, or its square). The first step's
    slopes (AdamW's sign(g) step, flat in the weights) are a residue near 0 that fp16 rounding
    moves, so only the second step's are compared; the held-preconditioner variant at both."""
    hypergrad = {"name": "hypergrad", "options": {"beta": 0.1}}
    slopes, held = {}, {}
    for precision in ("no", "fp16"):
        d = distiller(tokenizer, builtin_plugins, accelerator(precision), hypergrad, steps=2)
        seen = []
        observe = d.strategy.observe
        d.strategy.observe = lambda fb: seen.append(fb.probe_grad) or observe(fb)
        d.run()
        assert d.probe_gradients == 2 and all(g is not None for g in seen)
        slopes[precision] = torch.tensor([[g.slopes["fkl"], g.slopes["rkl"]] for g in seen])
        held[precision] = torch.tensor([[g.held["fkl"], g.held["rkl"]] for g in seen])
    assert slopes["no"][0].abs().max() < 0.1 * slopes["no"][1].abs().max()
    assert relative(slopes["fp16"][1], slopes["no"][1]) < 0.01  # measured 2.6e-4
    for step in range(2):
        assert relative(held["fp16"][step], held["no"][step]) < 0.01  # measured 2.9e-3 and 4.6e-4

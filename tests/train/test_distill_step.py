"""The distillation step on real tiny models: eval-mode criteria, loss normalised by the
step's response tokens, and trial updates that restore the exact state."""
from __future__ import annotations

import pytest
import torch

from arkd_bench.data.collate import IGNORE_INDEX, TrainingDataset, collate_for_training
from arkd_bench.recipe.schema import MethodSpec, TrainSpec
from arkd_bench.teacher.base import OnlineTeacher
from arkd_bench.testing import tiny_gpt2
from arkd_bench.train.distill import Distiller
from helpers import examples_of_varied_length as examples


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield




def make_distiller(tokenizer, builtin_plugins, *, weighting=None, objective=("fkl", "rkl"), dropout=0.0,
                   probe=(), **train):
    from accelerate import Accelerator

    student = tiny_gpt2(tokenizer, seed=1)
    if dropout:
        student.config.resid_pdrop = student.config.embd_pdrop = student.config.attn_pdrop = dropout
        student = type(student)(student.config)
    teacher = tiny_gpt2(tokenizer, n_layer=2, seed=2)
    method = MethodSpec.model_validate({"name": "m", "objective": list(objective),
                                        "weighting": weighting or {"name": "fixed", "options": {"weights": [0.5, 0.5]}}})
    spec = TrainSpec.model_validate({"steps": 2, "batch_size": 4, "max_length": 96, **train})
    items = TrainingDataset(examples(32), tokenizer, spec.max_length).items
    return Distiller(student=student, teacher=OnlineTeacher(teacher), tokenizer=tokenizer, train_items=items,
                     method=method,
                     train=spec, plugins=builtin_plugins, seed=0, accelerator=Accelerator(cpu=True),
                     probe_items=list(probe))


def batch_of(tokenizer, items):
    return collate_for_training(items, tokenizer.pad_token_id)


def test_criteria_are_measured_without_dropout_and_restore_train_mode(tokenizer, builtin_plugins):
    d = make_distiller(tokenizer, builtin_plugins, dropout=0.3)
    d.student.train()
    batch = batch_of(tokenizer, d.dataset.items[:8])
    first, second = d._criteria([batch]), d._criteria([batch])
    assert first == second  # bit-identical: no dropout draw in either measurement
    assert d.student.training
    # in train mode the same measurement moves: the noise the eval-mode criteria remove
    with torch.no_grad():
        s1, t1, labels = d._logits(batch)
        s2, _, _ = d._logits(batch)
    assert not torch.equal(s1, s2)


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_two_micro_batches_give_the_gradient_of_one_batch(tokenizer, builtin_plugins):
    d = make_distiller(tokenizer, builtin_plugins)
    def length(item):
        return sum(label != IGNORE_INDEX for label in item["labels"])

    items = sorted(d.dataset.items[:32], key=length)  # short answers in one half, long in the other
    lengths = [length(item) for item in items]
    assert len(set(lengths[:16])) > 1 and sum(lengths[:16]) != sum(lengths[16:])  # unequal halves
    d.student.eval()  # no dropout draw: the two ways must see the same function
    whole = [batch_of(tokenizer, items)]
    halves = [batch_of(tokenizer, items[:16]), batch_of(tokenizer, items[16:])]

    def step_grads(batches):
        d.student.zero_grad(set_to_none=True)
        n_tokens = d._step_tokens(batches)
        for b in batches:
            d._micro_step(b, 0, n_tokens)
        return _grads(d.student)

    one, two = step_grads(whole), step_grads(halves)
    assert one.keys() == two.keys() and one
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)
    # the old rule (mean of the micro-batches' means) gives another gradient here
    d.student.zero_grad(set_to_none=True)
    for b in halves:
        d._micro_step(b, 0, 2 * d._step_tokens([b]))
    old = _grads(d.student)
    assert any(not torch.allclose(old[n], one[n], rtol=1e-3, atol=1e-6) for n in one)


def test_trial_update_restores_the_exact_state_and_matches_the_real_update(tokenizer, builtin_plugins):
    from arkd_bench.train.optim import adamw_with_schedule
    from arkd_bench.train.trial import TermGradients, TrialUpdate

    d = make_distiller(tokenizer, builtin_plugins, dropout=0.2)
    probe = batch_of(tokenizer, d.dataset.items[:6])
    batch = batch_of(tokenizer, d.dataset.items[8:16])
    optimizer, _ = adamw_with_schedule(d.student, 0.01, 0.0, 0, 10)
    d.student.train()
    for _ in range(2):  # give the optimizer some state
        d.student.zero_grad()
        d._micro_step(batch, 0, d._step_tokens([batch]))
        optimizer.step()
    params = {n: p.detach().clone() for n, p in d.student.named_parameters()}
    state = {k: {n: v.clone() if torch.is_tensor(v) else v for n, v in s.items()}
             for k, s in optimizer.state_dict()["state"].items()}
    grads = TermGradients(d.student.parameters(), 2)
    n = d._step_tokens([batch])
    d._micro_step(batch, 0, n, grads)
    trial = TrialUpdate(grads, optimizer, clip=None)
    after = {a: trial.run([a, 1 - a], lambda: d._criteria([probe])) for a in (0.0, 0.5, 1.0)}
    assert after[0.0] != after[1.0]
    for name, p in d.student.named_parameters():
        assert torch.equal(p, params[name]), name
    for k, s in optimizer.state_dict()["state"].items():
        for key, value in s.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(state[k][key]))
    # the real update with the weights the step used lands where the trial said it would
    grads.install(grads.actual)
    optimizer.step()
    assert d._criteria([probe]) == pytest.approx(after[0.5], rel=1e-6)


def test_lookahead_takes_the_candidate_whose_trial_is_best(tokenizer, builtin_plugins):
    d = make_distiller(tokenizer, builtin_plugins, steps=3, log_every=1, lr=0.02,
                       weighting={"name": "lookahead", "options": {"candidates": [0.0, 0.5, 1.0]}},
                       probe=TrainingDataset(examples(40)[32:], tokenizer, 96).items)
    measure = d._criteria
    measured = []
    d._criteria = lambda batches: measured.append(len(batches)) or measure(batches)
    outcome = d.run()
    assert d.trial_updates == 3 * 3
    assert len(measured) == 3 * 3  # the probe is measured for the trials only, not before and after
    for record in outcome.log:
        assert record["strategy/alpha"] in (0.0, 0.5, 1.0)
        assert record["weight/fkl"] == record["strategy/alpha"]
        assert record["strategy/criterion_spread"] > 0


def test_the_probe_is_measured_once_a_step_and_before_reuses_the_last_after(tokenizer, builtin_plugins):
    """probe_before(t) is probe_after(t-1): nothing changes the weights in between. A fresh
    measurement at step t's pre-update weights (taken inside `weights`, which runs before the
    update) gives the same values, so reusing it loses nothing; the run measures steps + 1 times."""
    probe_items = TrainingDataset(examples(40)[32:], tokenizer, 96).items
    d = make_distiller(tokenizer, builtin_plugins, steps=4, dropout=0.2, lr=0.02,
                       weighting={"name": "arkd", "options": {"update_every": 1, "warmup_steps": 1}},
                       probe=probe_items)
    probe = batch_of(tokenizer, probe_items)
    with torch.no_grad():
        probe["teacher_logits"] = d.teacher.model(input_ids=probe["input_ids"],
                                                  attention_mask=probe["attention_mask"]).logits
    calls, fresh, feedback = [], [], []
    measure = d._criteria
    d._criteria = lambda batches: calls.append(1) or measure(batches)
    weights, observe = d.strategy.weights, d.strategy.observe
    d.strategy.weights = lambda features: fresh.append(measure([probe])) or weights(features)
    d.strategy.observe = lambda fb: feedback.append(fb) or observe(fb)
    d.run()
    assert len(calls) == 4 + 1
    assert [fb.probe_before for fb in feedback] == fresh
    assert all(feedback[t].probe_before == feedback[t - 1].probe_after for t in range(1, 4))
    assert all(fb.probe_before != fb.probe_after for fb in feedback)  # every update moved the probe


def test_paired_reward_runs_in_the_loop_and_is_logged_only_when_measured(tokenizer, builtin_plugins):
    d = make_distiller(tokenizer, builtin_plugins, steps=4, log_every=1,
                       weighting={"name": "arkd", "options": {"paired_alpha": 0.5, "update_every": 1,
                                                              "warmup_steps": 1}},
                       probe=TrainingDataset(examples(40)[32:], tokenizer, 96).items)
    outcome = d.run()
    assert d.trial_updates == 3  # one reference trial per step after the warm-up
    rewarded = [r["step"] for r in outcome.log if "strategy/reward" in r]
    assert rewarded == [1, 2, 3]


def test_trial_strategies_need_per_batch_weights(tokenizer, builtin_plugins):
    from arkd_bench.train.trial import TermGradients

    d = make_distiller(tokenizer, builtin_plugins, weighting={"name": "greedy"})
    batch = batch_of(tokenizer, d.dataset.items[:4])
    with pytest.raises(ValueError, match="one weight per term and batch"):
        d._micro_step(batch, 0, d._step_tokens([batch]), TermGradients(d.student.parameters(), 2))


@pytest.mark.parametrize("weighting", [None, {"name": "greedy"}, {"name": "arkd", "options": {"update_every": 1}}])
def test_the_head_inside_the_pass_trains_like_dense_logits(tokenizer, builtin_plugins, weighting):
    """train.fused_head: the student's logits are never materialised, and it is the same
    training: one micro-step gives the same gradients (GPT-2 ties its head to the embedding, so
    the head's gradient joins the embedding's), and a run logs the same losses, weights and
    features at every step."""
    probe = TrainingDataset(examples(40)[32:], tokenizer, 96).items
    grads, logs = [], []
    for fused in (False, True):
        d = make_distiller(tokenizer, builtin_plugins, steps=3, log_every=1, lr=0.02, weighting=weighting,
                           probe=probe, fused_head=fused)
        assert (d.lm_head is not None) == fused
        batch = batch_of(tokenizer, d.dataset.items[:8])
        d.student.zero_grad()
        d._micro_step(batch, 0, d._step_tokens([batch]))
        grads.append(_grads(d.student))
        d.student.zero_grad()
        logs.append(d.run().log)
    for name, g in grads[0].items():
        scale = float(g.abs().max())
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-5 * scale, msg=name)
    assert len(logs[0]) == len(logs[1]) == 3
    for a, b in zip(*logs):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key


def test_the_head_inside_the_pass_refuses_what_it_cannot_do(tokenizer, builtin_plugins):
    from arkd_bench.train.distill import student_head

    with pytest.raises(ValueError, match="fused_head needs temperature 1"):
        TrainSpec.model_validate({"fused_head": True, "temperature": 2.0})
    d = make_distiller(tokenizer, builtin_plugins)
    d.student.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="plain linear LM head .* final_logit_softcapping"):
        student_head(d.student, d.accelerator)

"""First-order slopes (train/trial.py): the derivative, in each term's weight, of a criterion
after the real AdamW update, checked against finite differences of real trial updates on a
float64 problem; and what they cost the loop (only strategies that request "probe_grad")."""
from __future__ import annotations

import pytest
import torch

from arkd_bench.train.trial import TermGradients, TrialUpdate, first_order_slopes


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


class Quadratic:
    """Two term losses and a probe criterion, quadratics with different curvature per
    coordinate, over two float64 parameters."""

    def __init__(self, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)

        def rand(*shape):
            return torch.randn(*shape, generator=gen, dtype=torch.float64)

        self.params = [torch.nn.Parameter(rand(7)), torch.nn.Parameter(rand(2, 3))]
        self.targets = [[rand(7), rand(2, 3)] for _ in range(3)]  # fkl, rkl, probe
        self.curvature = [[rand(7).exp(), rand(2, 3).exp()] for _ in range(3)]

    def loss(self, which: int):
        return sum((c * (p - t) ** 2).sum() for p, t, c in zip(self.params, self.targets[which], self.curvature[which]))

    def terms(self):
        return [self.loss(0), self.loss(1)]

    def probe_grad(self):
        return list(torch.autograd.grad(self.loss(2), self.params))


def prepared(problem: Quadratic, optimizer, weights, warm_steps: int, scaler=None) -> TermGradients:
    """Give the optimizer `warm_steps` steps of history, then keep this step's term gradients."""
    gen = torch.Generator().manual_seed(1)
    for _ in range(warm_steps):
        optimizer.zero_grad()
        w = torch.rand(2, generator=gen, dtype=torch.float64)
        (w[0] * problem.loss(0) + w[1] * problem.loss(1)).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    grads = TermGradients(problem.params, 2, scaler=scaler)
    grads.backward(problem.terms(), weights)
    grads.install(grads.actual)
    return grads


def finite_difference(problem, grads, optimizer, weights, clip, h=1e-4):
    """d (probe criterion after the trial update) / d w_t, central differences."""
    trial = TrialUpdate(grads, optimizer, clip)
    out = []
    for t in range(2):
        up, down = list(weights), list(weights)
        up[t] += h
        down[t] -= h
        with torch.no_grad():
            c_up = trial.run(up, lambda: float(problem.loss(2)))
            c_down = trial.run(down, lambda: float(problem.loss(2)))
        out.append((c_up - c_down) / (2 * h))
    return out


@pytest.mark.parametrize("kind, options, max_norm, warm", [
    ("adamw", {"weight_decay": 0.01}, None, 5),
    ("adamw", {"weight_decay": 0.0}, 0.5, 5),  # clipping active
    ("adamw", {"amsgrad": True}, None, 5),
    ("adam", {"weight_decay": 0.1}, None, 5),  # L2 decay inside the gradient
    ("adamw", {}, None, 1),
    ("adamw", {}, None, 0),  # the first step: sign(g), derivative 0
], ids=["adamw", "clipped", "amsgrad", "adam-l2", "second-step", "first-step"])
def test_slopes_are_the_derivative_of_the_real_update(kind, options, max_norm, warm):
    problem = Quadratic()
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    optimizer = cls(problem.params, lr=1e-5, **options)  # small: c is linear over the step
    weights = [0.3, 0.7]
    grads = prepared(problem, optimizer, weights, warm)
    clip = None if max_norm is None else (lambda: torch.nn.utils.clip_grad_norm_(problem.params, max_norm))
    if max_norm is not None:
        norm = torch.cat([p.grad.flatten() for p in problem.params]).norm()
        assert norm > max_norm  # the clipping is active
    slopes, update = first_order_slopes(grads, problem.probe_grad(), [p.grad for p in problem.params],
                                        optimizer, max_norm)
    fd = finite_difference(problem, grads, optimizer, weights, clip)
    scale = max(abs(v) for v in fd) + 1e-12
    if warm == 0:  # Adam's first step is sign(g): it does not move with w, which P held fixed misses
        held, _ = first_order_slopes(grads, problem.probe_grad(), [p.grad for p in problem.params], optimizer,
                                     max_norm, hold_preconditioner=True)
        size = max(abs(v) for v in held)
        assert max(abs(v) for v in [*slopes, *fd]) < 1e-6 * size
        return
    for s, f in zip(slopes, fd):
        assert s == pytest.approx(f, abs=2e-3 * scale)
    # `update` is the slope along the step's own weights (0 when clipping normalises it away)
    assert update == pytest.approx(weights[0] * slopes[0] + weights[1] * slopes[1], abs=1e-9 * scale)
    if max_norm is not None:
        assert update == 0.0


def test_held_preconditioner_is_the_plain_formula():
    """hold_preconditioner: -lr (1 - beta1)/(1 - beta1^t) probe_grad . P g_t with P = 1/(sqrt(v_hat) + eps)
    of the step's own gradient."""
    problem = Quadratic(seed=2)
    optimizer = torch.optim.AdamW(problem.params, lr=1e-2)
    grads = prepared(problem, optimizer, [0.5, 0.5], 3)
    probe = problem.probe_grad()
    slopes, _ = first_order_slopes(grads, probe, [p.grad for p in problem.params], optimizer, None,
                                   hold_preconditioner=True)
    beta1, beta2 = optimizer.defaults["betas"]
    expected = [0.0, 0.0]
    for i, p in enumerate(problem.params):
        state = optimizer.state[p]
        t = float(state["step"]) + 1
        v = beta2 * state["exp_avg_sq"] + (1 - beta2) * p.grad**2
        precond = 1 / ((v / (1 - beta2**t)).sqrt() + 1e-8)
        for term in range(2):
            expected[term] += float((probe[i] * precond * grads.per_term[term][i]).sum())
    coef = -1e-2 * (1 - beta1) / (1 - beta1**4)
    assert slopes == pytest.approx([coef * e for e in expected], rel=1e-10)


class FakeScaler:
    """What TermGradients and first_order_slopes use of a GradScaler."""

    def __init__(self, scale: float) -> None:
        self.value = scale

    def is_enabled(self) -> bool:
        return True

    def scale(self, loss):
        return loss * self.value

    def get_scale(self) -> float:
        return self.value


def test_scaled_gradients_are_unscaled_consistently():
    """Under fp16 the terms' and the step's gradients are kept scaled (as the GradScaler wants
    them); the slopes unscale them once, so they equal the unscaled problem's."""
    plain = Quadratic(seed=3)
    opt = torch.optim.AdamW(plain.params, lr=1e-3)
    expected = first_order_slopes(prepared(plain, opt, [0.2, 0.8], 3), plain.probe_grad(),
                                  [p.grad for p in plain.params], opt, 1.0)
    scaled = Quadratic(seed=3)
    opt = torch.optim.AdamW(scaled.params, lr=1e-3)
    grads = prepared(scaled, opt, [0.2, 0.8], 3, scaler=FakeScaler(2.0**16))
    got = first_order_slopes(grads, scaled.probe_grad(), [p.grad for p in scaled.params], opt, 1.0)
    assert got[0] == pytest.approx(expected[0], rel=1e-9)
    # an overflowing step (inf in the scaled gradient) has no slopes: the scaler will skip it
    grads.per_term[0][0][0] = float("inf")
    grads.install(grads.combined([0.2, 0.8]))
    assert first_order_slopes(grads, scaled.probe_grad(), [p.grad for p in scaled.params], opt, 1.0) is None


def test_other_optimizers_are_refused():
    problem = Quadratic()
    optimizer = torch.optim.SGD(problem.params, lr=0.1)
    grads = prepared(problem, optimizer, [0.5, 0.5], 0)
    with pytest.raises(ValueError, match="Adam/AdamW only"):
        first_order_slopes(grads, problem.probe_grad(), [p.grad for p in problem.params], optimizer, None)


# -- in the loop ----------------------------------------------------------------------------------

def make_distiller(tokenizer, plugins, weighting, *, dropout=0.0, **train):
    from accelerate import Accelerator

    from arkd_bench.data.base import Example
    from arkd_bench.data.collate import TrainingDataset
    from arkd_bench.recipe.schema import MethodSpec, TrainSpec
    from arkd_bench.testing import SAMPLE_TEXTS, tiny_gpt2
    from arkd_bench.teacher.base import OnlineTeacher
    from arkd_bench.train.distill import Distiller

    examples = [Example(prompt=f"Item {i}:", references=(" ".join(SAMPLE_TEXTS[j % len(SAMPLE_TEXTS)]
                                                                  for j in range(i, i + 1 + i % 8)),))
                for i in range(40)]
    student = tiny_gpt2(tokenizer, seed=1)
    if dropout:
        student.config.resid_pdrop = student.config.embd_pdrop = student.config.attn_pdrop = dropout
        student = type(student)(student.config)
    method = MethodSpec.model_validate({"name": "m", "objective": ["fkl", "rkl"], "weighting": weighting})
    spec = TrainSpec.model_validate({"steps": 4, "batch_size": 4, "max_length": 96, "lr": 0.02, "log_every": 1,
                                     **train})
    return Distiller(student=student, teacher=OnlineTeacher(tiny_gpt2(tokenizer, n_layer=2, seed=2)),
                     tokenizer=tokenizer,
                     train_items=TrainingDataset(examples[:32], tokenizer, 96).items, method=method, train=spec,
                     plugins=plugins, seed=0, accelerator=Accelerator(cpu=True),
                     probe_items=TrainingDataset(examples[32:], tokenizer, 96).items)


def counted_run(d):
    """Run `d`, counting probe-criteria measurements and keeping each Feedback."""
    measured, feedback = [], []
    measure, observe = d._criteria, d.strategy.observe
    d._criteria = lambda batches: measured.append(1) or measure(batches)
    d.strategy.observe = lambda fb: feedback.append(fb) or observe(fb)
    return d.run(), len(measured), feedback


HYPERGRAD = {"name": "hypergrad", "options": {"beta": 0.1}}


def test_hypergrad_in_the_loop_differentiates_the_probe_and_is_deterministic(tokenizer, builtin_plugins):
    logs = []
    for _ in range(2):
        d = make_distiller(tokenizer, builtin_plugins, HYPERGRAD, dropout=0.1)
        outcome, measured, feedback = counted_run(d)
        assert measured == 0 and d.trial_updates == 0  # no criteria before/after, no trials
        assert d.probe_gradients == 4  # one probe forward and backward a step
        assert all(fb.probe_grad is not None and fb.probe_before is None for fb in feedback)
        alphas = [r["strategy/alpha"] for r in outcome.log]
        assert all(0.0 <= a <= 1.0 for a in alphas) and alphas[0] == 0.5 and len(set(alphas)) == 4
        assert [r["weight/fkl"] for r in outcome.log] == pytest.approx(alphas)
        for r, fb in zip(outcome.log, feedback):
            assert r["strategy/hypergrad"] == fb.probe_grad.slopes["fkl"] - fb.probe_grad.slopes["rkl"]
        logs.append([{k: v for k, v in r.items()} for r in outcome.log])
    assert logs[0] == logs[1]


@pytest.mark.parametrize("weighting", [{"name": "fixed", "options": {"weights": [0.5, 0.5]}}, {"name": "arkd"},
                                       {"name": "lookahead", "options": {"candidates": [0.5]}}])
def test_only_strategies_that_ask_get_a_probe_gradient(tokenizer, builtin_plugins, weighting):
    d = make_distiller(tokenizer, builtin_plugins, weighting, steps=2)
    d.run()
    assert d.probe_gradients == 0


def test_arkd_first_order_reward_runs_without_trials_or_criteria(tokenizer, builtin_plugins):
    weighting = {"name": "arkd", "options": {"reward": "first_order", "paired_alpha": 0.25, "update_every": 1}}
    d = make_distiller(tokenizer, builtin_plugins, weighting)
    assert d.strategy.feedback_requests == {"probe_grad"}
    outcome, measured, feedback = counted_run(d)
    assert measured == 0 and d.trial_updates == 0 and d.probe_gradients == 4
    for r, fb in zip(outcome.log, feedback):
        grad, alpha = fb.probe_grad, r["strategy/alpha"]
        assert grad.update == pytest.approx(alpha * grad.slopes["fkl"] + (1 - alpha) * grad.slopes["rkl"],
                                            rel=1e-4, abs=1e-12)
        expected = 0.25 * grad.slopes["fkl"] + 0.75 * grad.slopes["rkl"] - grad.update
        assert r["strategy/reward"] == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_the_probe_gradient_is_taken_in_eval_mode(tokenizer, builtin_plugins):
    from arkd_bench.data.collate import collate_for_training

    d = make_distiller(tokenizer, builtin_plugins, HYPERGRAD, dropout=0.3)
    d.student.train()
    probe = collate_for_training(d.probe_items, tokenizer.pad_token_id)
    with torch.no_grad():
        probe["teacher_logits"] = d.teacher.model(input_ids=probe["input_ids"],
                                                  attention_mask=probe["attention_mask"]).logits
    params = [p for p in d.student.parameters() if p.requires_grad]
    first, second = d._probe_criterion_gradient(probe, params), d._probe_criterion_gradient(probe, params)
    assert first[0] == second[0] and all(torch.equal(a, b) for a, b in zip(first[1], second[1]))
    assert d.student.training
    assert all(p.grad is None for p in params)  # .grad is the update's, never the probe's


def test_hypergrad_trains_in_a_tiny_grid(tmp_path):
    """The whole pipeline: the recipe validates, the cell trains and logs alpha at every step,
    the strategy's state is saved."""
    from arkd_bench.testing import run_tiny

    run = run_tiny(tmp_path, methods=[{"name": "hg", "objective": ["fkl", "rkl"],
                                       "weighting": {"name": "hypergrad", "options": {"beta": 0.05}}}],
                   train={"steps": 4, "batch_size": 4, "max_length": 64, "log_every": 1})
    log = [r for r in run.logs["hg"] if "selected" not in r]
    assert [r["step"] for r in log] == [0, 1, 2, 3]
    assert all(0.0 <= r["strategy/alpha"] <= 1.0 for r in log)
    cell = next(c for c in run.results["cells"] if c["method"] == "hg")
    state = torch.load(run.out / "cells" / cell["id"] / "strategy.pt")
    assert state["alpha"] == pytest.approx(log[-1]["strategy/alpha"] + log[-1]["strategy/meta_step"])

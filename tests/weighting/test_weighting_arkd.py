"""arkd: the RL policy on bandits with a known optimum, reward bookkeeping, resume, options."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from arkd_bench.weighting import BUILTIN_WEIGHTINGS, ArkdWeighting, Feedback

TARGET = 0.3


def run_bandit(strategy, features, feedback, steps, seed=0, noise=0.005, start=0):
    """Drive weights()/observe() with r(alpha) = -(alpha - TARGET)^2 + noise.

    Returns the FKL weights (per step, or per step and token) and the log_scalars series.
    """
    rng = np.random.default_rng(seed)
    alphas, logs = [], []
    for k in range(start, start + steps):
        w_fkl = strategy.weights(features)[0]  # per batch, or per token
        alpha = float(w_fkl[features.mask].mean()) if w_fkl.dim() else float(w_fkl)
        reward = -((alpha - TARGET) ** 2) + noise * rng.standard_normal()
        strategy.observe(feedback(features, reward, step=k))
        alphas.append(w_fkl.numpy())
        logs.append(strategy.log_scalars())
    series = {key: np.array([log.get(key, np.nan) for log in logs]) for key in logs[-1]}
    return np.array(alphas), series


@pytest.mark.parametrize("action", ["beta", "logit_normal"])
@pytest.mark.parametrize("baseline", ["ema", "value"])
def test_bandit_mean_alpha_converges_to_optimum(action, baseline, make_features, feedback):
    s = ArkdWeighting(action=action, baseline=baseline, lr=3e-3, seed=0)
    alphas, logs = run_bandit(s, make_features(), feedback, steps=800)
    expected = logs["alpha_expected"]  # the policy's mean alpha at each step
    assert expected[0] == pytest.approx(0.5, abs=0.02)  # starts centred on initial_alpha
    assert np.all((alphas > 0) & (alphas < 1))
    assert expected[-200:].mean() == pytest.approx(TARGET, abs=0.05)
    assert logs["policy_entropy"][-1] < logs["policy_entropy"][0] - 0.5  # it has sharpened
    assert {"alpha", "reward", "baseline", "loss"} <= logs.keys()
    if baseline == "value":
        assert "value_loss" in logs


def test_bernoulli_alphas_are_binary_and_better_action_gains(make_features, feedback):
    s = ArkdWeighting(action="bernoulli", lr=3e-3, seed=0)
    alphas, logs = run_bandit(s, make_features(), feedback, steps=300)
    p_one = logs["alpha_expected"]  # P(alpha = 1)
    assert set(np.unique(alphas)) <= {0.0, 1.0}
    # r(0) = -0.09 beats r(1) = -0.49, so P(alpha = 0) = 1 - p must rise
    assert p_one[0] == pytest.approx(0.5, abs=0.02)
    assert p_one[-20:].mean() < 0.2
    assert np.mean(alphas[-100:] == 0.0) > 0.8


def test_rewards_line_up_with_the_actions_of_their_step(make_features, feedback):
    s = ArkdWeighting(update_every=1000)
    f = make_features()
    for k in range(12):
        w_a = s.weights(f)  # two micro-batches in one optimizer step
        w_b = s.weights(f)
        reward = float(w_a[0] + 10 * w_b[0])  # identifies both actions of this step
        s.observe(feedback(f, reward, step=k))
    ready = s._ready
    assert len(ready) == 24
    for first, second in zip(ready[::2], ready[1::2]):
        assert first["step"] == second["step"]
        assert first["reward"] == pytest.approx(float(first["action"][0] + 10 * second["action"][0]), rel=1e-6)
        assert second["reward"] == first["reward"]


def test_warmup_holds_initial_alpha_and_does_not_learn(make_features, feedback):
    s = ArkdWeighting(warmup_steps=5, initial_alpha=0.7, update_every=1)
    before = [p.detach().clone() for p in s._policy.parameters()]
    f = make_features()
    for k in range(5):
        assert torch.allclose(s.weights(f), torch.tensor([0.7, 0.3]))
        s.observe(feedback(f, 0.1 * k, step=k))
    assert all(torch.equal(a, b) for a, b in zip(before, s._policy.parameters()))
    assert s.log_scalars()["baseline"] > 0  # warmup rewards prime the baseline
    s.weights(f)
    s.observe(feedback(f, 1.0, step=5))
    assert not all(torch.equal(a, b) for a, b in zip(before, s._policy.parameters()))


@pytest.mark.parametrize("reward", ["batch", "probe"])
def test_reward_is_the_decrease_of_the_criterion(reward, make_features):
    f = make_features()
    s = ArkdWeighting(reward=reward, criterion="fkl")
    assert s.feedback_requests == {"batch": {"batch_after"}, "probe": {"probe"}}[reward]
    assert s.feedback_criteria == ("fkl",)
    s.weights(f)
    # the batch reward uses the eval-mode criterion before the update, not the training
    # forward's features (which carry dropout noise)
    before = 0.75 if reward == "batch" else 2.0
    s.observe(
        Feedback(step=0, total_steps=10, loss=0.0, term_losses={}, features=f,
                 probe_before={"fkl": 2.0}, probe_after={"fkl": 1.5},
                 batch_before={"fkl": 0.75}, batch_after={"fkl": 0.25})
    )
    after = 0.25 if reward == "batch" else 1.5
    assert s.log_scalars()["reward"] == pytest.approx(before - after, rel=1e-5)


def test_missing_feedback_is_a_clear_error(make_features):
    f = make_features()
    s = ArkdWeighting()
    s.weights(f)
    with pytest.raises(ValueError, match="probe_before/probe_after"):
        s.observe(Feedback(step=0, total_steps=10, loss=0.0, term_losses={}, features=f))
    s = ArkdWeighting(criterion="tvd")
    s.weights(f)
    with pytest.raises(ValueError, match=r"criteria \['tvd'\]"):
        s.observe(Feedback(step=0, total_steps=10, loss=0.0, term_losses={}, features=f,
                           probe_before={"fkl": 1.0}, probe_after={"fkl": 1.0}))


def test_rouge_reward_every_k_steps_goes_to_the_whole_window(make_features):
    f = make_features()
    s = ArkdWeighting(reward="rouge", reward_every=3, warmup_steps=2, update_every=1000)
    assert s.feedback_requests == {"rouge_probe"} and s.feedback_criteria == ()
    calls = []

    def rouge():
        calls.append(step)
        return 10.0 + step  # Rouge-L rises one point per step

    for step in range(11):
        s.weights(f)
        s.observe(Feedback(step=step, total_steps=11, loss=0.0, term_losses={}, features=f, rouge_probe=rouge))
    assert calls == [1, 4, 7, 10]  # reference at the last warmup step, then every 3 policy steps
    assert [t["step"] for t in s._ready] == list(range(2, 11))
    assert all(t["reward"] == 3.0 for t in s._ready)


def test_token_granularity_shapes_and_mask(make_features):
    mask = np.ones((3, 4), bool)
    mask[1, 2:] = False
    f = make_features(shape=(3, 4), mask=mask)
    s = ArkdWeighting(granularity="token", action="logit_normal")
    w = s.weights(f)
    m = torch.tensor(mask)
    assert w.shape == (2, 3, 4)
    assert torch.all(w[:, ~m] == 0)
    assert torch.allclose(w.sum(0)[m], torch.ones(int(m.sum())))
    assert len(torch.unique(w[0][m])) == int(m.sum())  # one sample per token
    s.observe(Feedback(step=0, total_steps=10, loss=0.0, term_losses={}, features=f,
                       probe_before={"fkl": 1.0, "rkl": 1.0}, probe_after={"fkl": 0.5, "rkl": 1.0}))
    assert len(s._ready) == 1 and s._ready[0]["state"].shape == (int(m.sum()), len(s.options.features))


def test_batch_granularity_shape(make_features):
    w = ArkdWeighting().weights(make_features())
    assert w.shape == (2,) and float(w.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("granularity", ["batch", "token"])
def test_state_dict_round_trip_continues_identically(granularity, make_features, feedback):
    opts = dict(granularity=granularity, baseline="value", update_every=4, lr=1e-2)
    f = make_features()
    s = ArkdWeighting(seed=0, **opts)
    run_bandit(s, f, feedback, steps=30)  # stops between two updates, with rewards buffered
    buffer = io.BytesIO()
    torch.save(s.state_dict(), buffer)
    buffer.seek(0)
    resumed = ArkdWeighting(seed=123, **opts)  # a different seed: everything must come from the state
    resumed.load_state_dict(torch.load(buffer))  # plain tensors and numbers: weights_only loads it
    a, _ = run_bandit(s, f, feedback, steps=20, seed=5, start=30)
    b, _ = run_bandit(resumed, f, feedback, steps=20, seed=5, start=30)
    np.testing.assert_array_equal(a, b)
    assert s.log_scalars() == resumed.log_scalars()


@pytest.mark.parametrize("other", [{"features": ["fkl", "rkl"]}, {"baseline": "value"}, {"hidden": [8]}])
def test_state_from_another_policy_shape_is_refused(other):
    state = ArkdWeighting(**other).state_dict()
    with pytest.raises(ValueError, match="arkd state was saved with"):
        ArkdWeighting().load_state_dict(state)


def test_leaves_the_global_rng_alone(make_features, feedback):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    run_bandit(ArkdWeighting(seed=7, update_every=1), make_features(), feedback, steps=5)
    assert torch.equal(torch.rand(3), expected)


def test_registered_and_exposes_mu():
    assert BUILTIN_WEIGHTINGS["arkd"] is ArkdWeighting
    assert ArkdWeighting(mu=0.6).akl_mu == 0.6


@pytest.mark.parametrize(
    "options, message",
    [
        ({"features": ["fkl", "gap_ratoi"]}, "did you mean 'gap_ratio'"),
        ({"features": ["fkl", "fkl"]}, "twice"),
        ({"features": []}, "at least one"),
        ({"reward_every": 5}, "reward_every only applies to reward: rouge"),
        ({"reward": "rouge", "criterion": "tvd"}, "criterion only applies to reward: batch or first_order or probe"),
        ({"value_coef": 1.0}, "value_coef only applies to baseline: value"),
        ({"action": "gaussian"}, "action"),
        ({"lr": 0}, "lr"),
        ({"initial_alpha": 1.5}, "initial_alpha"),
        ({"hidden": [0]}, "hidden"),
        ({"baseline_decay": 1.0}, "baseline_decay"),
        ({"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_invalid_options_rejected(options, message):
    with pytest.raises(ValidationError, match=message):
        ArkdWeighting(**options)


@pytest.mark.parametrize("terms", [["fkl"], ["fkl", "rkl", "tvd"], ["rkl", "fkl"]])
def test_check_terms_errors(terms):
    with pytest.raises(ValueError, match="arkd weighting"):
        ArkdWeighting(terms=terms)


def test_token_policy_learns_a_contextual_target(make_features):
    """Per-token alpha should follow a per-token optimum: 0.2 where top-1 agrees, 0.8 where not."""
    f = make_features(shape=(4, 8), seed=3)
    agree = f.top1_agree.bool()
    assert 0 < int(agree.sum()) < agree.numel()
    target = torch.where(agree, 0.2, 0.8)
    s = ArkdWeighting(granularity="token", features=["top1_agree"], lr=3e-3, entropy_coef=0.0)
    for k in range(1500):
        alpha = s.weights(f)[0]
        reward = -float(((alpha - target) ** 2).mean())
        s.observe(Feedback(step=k, total_steps=1500, loss=0.0, term_losses={}, features=f,
                           probe_before={"fkl": reward, "rkl": 0.0}, probe_after={"fkl": 0.0, "rkl": 0.0}))
    means = [float(s.weights(f)[0][agree].mean()), float(s.weights(f)[0][~agree].mean())]
    assert means[0] < 0.4 and means[1] > 0.6

"""Variance-reduced ARKD rewards, the lookahead strategy and FKL/RKL roles, on synthetic
problems whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

import arkd_bench
from arkd_bench.testing import fake_features
from arkd_bench.weighting import ArkdWeighting, Feedback, GreedyWeighting, LookaheadWeighting
from arkd_bench.weighting.base import ProbeGradient, TrialResult

BEST_ALPHA = 0.8


def gain(alpha: float) -> float:
    """How much an update with FKL weight alpha lowers the criterion: best at BEST_ALPHA."""
    return 0.01 * (1.0 - (alpha - BEST_ALPHA) ** 2)


def run_noisy_bandit(strategy, steps: int, noise: float = 0.1, seed: int = 0) -> list[float]:
    """Each step's criterion moves by a common shock (the batch, the learning rate...) that
    is 10x larger than anything alpha changes; a trial from the same state sees the same shock.
    Returns the policy's mean alpha at each step."""
    rng = np.random.default_rng(seed)
    features = fake_features()
    means = []
    for step in range(steps):
        before, shock = 1.0 + noise * rng.standard_normal(), noise * rng.standard_normal()
        strategy.weights(features)
        alpha = strategy.log_scalars()["alpha"]

        def trial(weights):
            return TrialResult(probe={"fkl": before - gain(weights[0]) + shock, "rkl": 0.0})

        strategy.before_update(trial)
        after = before - gain(alpha) + shock
        strategy.observe(Feedback(step=step, total_steps=steps, loss=0.0, term_losses={}, features=features,
                                  probe_before={"fkl": before, "rkl": 0.0},
                                  probe_after={"fkl": after, "rkl": 0.0}))
        means.append(strategy.log_scalars()["alpha_expected"])
    return means


def test_paired_reward_finds_the_best_alpha_where_the_plain_reward_cannot():
    options = {"criterion": "fkl", "update_every": 4, "lr": 0.01, "seed": 3}
    paired = run_noisy_bandit(ArkdWeighting(paired_alpha=0.5, **options), steps=300)
    plain = run_noisy_bandit(ArkdWeighting(**options), steps=300)
    # medians: the policy's mean alpha reads prev_alpha, so one extreme sample can jolt it
    assert abs(np.median(paired[100:]) - BEST_ALPHA) < 0.12
    assert abs(np.median(plain[100:]) - BEST_ALPHA) > 0.2  # still near its start, 0.5


def test_paired_reward_is_the_reference_criterion_minus_the_chosen_one():
    f = fake_features()
    s = ArkdWeighting(paired_alpha=0.25, criterion="fkl+rkl")
    assert s.feedback_requests == {"probe", "trial"}
    s.weights(f)
    seen = []

    def trial(weights):
        seen.append(weights)
        return TrialResult(probe={"fkl": 0.7, "rkl": 0.5})

    assert s.before_update(trial) is None  # ARKD keeps its own sampled update
    assert seen == [pytest.approx([0.25, 0.75])]
    s.observe(Feedback(step=0, total_steps=5, loss=0.0, term_losses={}, features=f,
                       probe_before={"fkl": 9.0, "rkl": 9.0}, probe_after={"fkl": 0.6, "rkl": 0.4}))
    assert s.log_scalars()["reward"] == pytest.approx((0.7 + 0.5) - (0.6 + 0.4))


def test_relative_reward_divides_by_the_criterion_before():
    f = fake_features()
    s = ArkdWeighting(criterion="fkl", reward_scale="relative")
    s.weights(f)
    s.observe(Feedback(step=0, total_steps=5, loss=0.0, term_losses={}, features=f,
                       probe_before={"fkl": 2.0}, probe_after={"fkl": 1.5}))
    assert s.log_scalars()["reward"] == pytest.approx(0.25)


@pytest.mark.parametrize("options, message", [
    ({"paired_alpha": 0.5, "granularity": "token"}, "granularity: batch"),
    ({"paired_alpha": 0.5, "reward": "rouge"}, "paired_alpha only applies to reward"),
    ({"paired_alpha": 1.5}, "less than or equal to 1"),
])
def test_paired_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        ArkdWeighting(**options)


def test_rewards_are_logged_only_at_the_steps_that_measured_them():
    f = fake_features()
    s = ArkdWeighting(reward="rouge", reward_every=2, update_every=1)
    logged = []
    for step in range(6):
        s.weights(f)
        s.observe(Feedback(step=step, total_steps=6, loss=0.0, term_losses={}, features=f,
                           rouge_probe=lambda: 10.0 + step))
        logged.append("reward" in s.log_scalars())
    # probes at steps 1, 3, 5; the first is only the reference
    assert logged == [False, False, False, True, False, True]


def test_lookahead_picks_the_candidate_with_the_lowest_trial_criterion():
    s = LookaheadWeighting(candidates=[0.0, 0.25, 0.5, 0.75, 1.0], criterion="fkl+rkl")
    assert s.feedback_requests == {"trial", "probe"}
    s.weights(fake_features())
    tried = []

    def trial(weights):
        tried.append(weights[0])
        return TrialResult(probe={"fkl": (weights[0] - 0.3) ** 2, "rkl": 1.0})

    chosen = s.before_update(trial)
    assert tried == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert chosen.tolist() == [0.25, 0.75]
    assert s.log_scalars()["alpha"] == 0.25
    assert s.log_scalars()["criterion_spread"] == pytest.approx(0.7**2 - 0.05**2)


def test_lookahead_with_the_batch_criterion_and_reversed_terms():
    s = LookaheadWeighting(terms=["rkl_term", "fkl_term"], directions=["reverse", "forward"], on="batch",
                           candidates=[0.0, 1.0], criterion="rkl")
    assert s.feedback_requests == {"trial", "batch_after"}
    chosen = s.before_update(lambda w: TrialResult(batch={"rkl": w[1]}))  # w[1] is the FKL weight
    assert chosen.tolist() == [1.0, 0.0]  # alpha = 0: all on the RKL term, which comes first


def test_divergences_declare_their_direction():
    get = arkd_bench.get_divergence
    assert [get(n).direction for n in ("fkl", "rkl", "skew_fkl", "skew_rkl", "tvd", "todi")] == [
        "forward", "reverse", "forward", "reverse", None, None]
    assert [get("jsd", beta=b).direction for b in (0.1, 0.5, 0.9)] == ["forward", None, "reverse"]
    assert [get("ab", alpha=a, beta=b).direction for a, b in ((1, 0), (0.5, 0.5), (0.2, 0.9))] == [
        "forward", None, "reverse"]


def test_greedy_finds_its_terms_by_direction_not_by_order():
    f = fake_features({"skew_rkl": "skew_rkl", "skew_fkl": "skew_fkl"})
    swapped = GreedyWeighting(terms=["skew_rkl", "skew_fkl"], directions=["reverse", "forward"])
    straight = GreedyWeighting(terms=["skew_fkl", "skew_rkl"], directions=["forward", "reverse"])
    w_swapped, w_straight = swapped.weights(f), straight.weights(f)
    assert np.allclose(w_swapped[1].numpy(), w_straight[0].numpy())  # the FKL weight lands on skew_fkl
    assert np.allclose(w_swapped[0].numpy(), w_straight[1].numpy())
    assert not np.allclose(w_straight[0].numpy(), w_straight[1].numpy())


@pytest.mark.parametrize("directions", [["forward", "forward"], [None, "reverse"]])
def test_fkl_rkl_strategies_need_one_term_of_each_direction(directions):
    with pytest.raises(ValueError, match="one forward-like"):
        GreedyWeighting(terms=["a", "b"], directions=directions)


def test_a_recipe_with_swapped_skew_terms_validates_and_one_without_an_rkl_term_does_not(tmp_path, builtin_plugins):
    from arkd_bench.recipe.schema import MethodSpec
    from arkd_bench.recipe.validate import _check_weighting_terms

    ok = MethodSpec.model_validate({"name": "akl", "objective": ["skew_rkl", "skew_fkl"], "weighting": "greedy"})
    bad = MethodSpec.model_validate({"name": "akl", "objective": ["fkl", "tvd"], "weighting": "greedy"})
    assert _check_weighting_terms(builtin_plugins, ok, ("methods", 0, "weighting")) == []
    problems = _check_weighting_terms(builtin_plugins, bad, ("methods", 0, "weighting"))
    assert problems and "tvd: neither" in problems[0].message


# -- first-order reward and K-step windows ---------------------------------------------------------

def first_order_feedback(step, f, fkl, rkl, alpha, criterion=2.0):
    """The loop's ProbeGradient for a step taken with FKL weight `alpha`."""
    grad = ProbeGradient(slopes={"fkl": fkl, "rkl": rkl}, update=alpha * fkl + (1 - alpha) * rkl, criterion=criterion)
    return Feedback(step=step, total_steps=10, loss=0.0, term_losses={}, features=f, probe_grad=grad)


def test_first_order_reward_is_the_predicted_paired_reward():
    """r = c_after(reference alpha) - c_after(alpha taken), to first order:
    (alpha - a) * (slope_rkl - slope_fkl); with no paired_alpha the reference is 0.5."""
    f = fake_features()
    for paired, reference in ((None, 0.5), (0.25, 0.25)):
        options = {} if paired is None else {"paired_alpha": paired}
        s = ArkdWeighting(reward="first_order", **options)
        assert s.feedback_requests == {"probe_grad"}  # no trial, no probe criteria
        s.weights(f)
        alpha = s.log_scalars()["alpha"]
        s.observe(first_order_feedback(0, f, fkl=-3e-4, rkl=1e-4, alpha=alpha))
        assert s.log_scalars()["reward"] == pytest.approx((alpha - reference) * (1e-4 - -3e-4))
    s = ArkdWeighting(reward="first_order", reward_scale="relative")
    s.weights(f)
    alpha = s.log_scalars()["alpha"]
    s.observe(first_order_feedback(0, f, fkl=-3e-4, rkl=1e-4, alpha=alpha, criterion=4.0))
    assert s.log_scalars()["reward"] == pytest.approx((alpha - 0.5) * 4e-4 / 4.0)


def test_first_order_reward_moves_the_policy_the_way_the_slopes_point():
    """Slopes whose difference (dc_after / d alpha) is -2e-4 on average, with noise twice that and
    a common part 100x larger (it moves both terms alike and cancels in the paired reward): the
    policy's mean alpha rises; with the sign turned, it falls."""
    f = fake_features()
    for sign in (1.0, -1.0):
        rng = np.random.default_rng(0)
        s = ArkdWeighting(reward="first_order", update_every=4, lr=0.01, seed=3)
        means = []
        for step in range(300):
            s.weights(f)
            alpha = s.log_scalars()["alpha"]
            common, slope = 0.02 * rng.standard_normal(), sign * (-2e-4 + 4e-4 * rng.standard_normal())
            s.observe(first_order_feedback(step, f, common + slope / 2, common - slope / 2, alpha))
            means.append(s.log_scalars()["alpha_expected"])
        late = np.median(means[200:])
        assert (late > 0.65) if sign > 0 else (late < 0.35), (sign, late)


def test_a_step_without_probe_gradient_earns_its_actions_nothing():
    """A skipped fp16 step (probe_grad None): that step's action gets no reward, and the next
    step's reward goes to the next step's action only."""
    f = fake_features()
    s = ArkdWeighting(reward="first_order", update_every=100)
    s.weights(f)
    s.observe(Feedback(step=0, total_steps=3, loss=0.0, term_losses={}, features=f))
    assert s._pending == [] and s._ready == [] and "reward" not in s.log_scalars()
    s.weights(f)
    s.observe(first_order_feedback(1, f, 1e-4, -1e-4, s.log_scalars()["alpha"]))
    assert [t["step"] for t in s._ready] == [1]


def test_reward_horizon_credits_the_windows_decrease_to_each_of_its_actions():
    """reward_horizon 3: the probe's decrease from before step 3k to after step 3k + 2 (the
    per-step decreases telescope) goes to the three actions of the window, with one advantage."""
    f = fake_features()
    s = ArkdWeighting(criterion="fkl", reward_horizon=3, update_every=100)
    probe = [5.0, 4.0, 3.5, 3.4, 3.0, 2.9, 2.0]
    rewarded = []
    for step in range(6):
        s.weights(f)
        s.observe(Feedback(step=step, total_steps=6, loss=0.0, term_losses={}, features=f,
                           probe_before={"fkl": probe[step]}, probe_after={"fkl": probe[step + 1]}))
        rewarded.append(s.log_scalars().get("reward"))
    assert rewarded[:2] == [None, None] and rewarded[3:5] == [None, None]
    assert rewarded[2] == pytest.approx(5.0 - 3.4) and rewarded[5] == pytest.approx(3.4 - 2.0)
    assert [t["step"] for t in s._ready] == [0, 1, 2, 3, 4, 5]
    assert [t["reward"] for t in s._ready] == pytest.approx([1.6] * 3 + [1.4] * 3)
    assert len({t["z"] for t in s._ready[3:]}) == 1
    assert s._since_update == 2  # windows, not steps


def test_reward_horizon_resumes_mid_window():
    f = fake_features()
    probe = [5.0, 4.0, 3.5, 3.4, 3.0, 2.9, 2.0]

    def feed(s, steps):
        out = []
        for step in steps:
            s.weights(f)
            s.observe(Feedback(step=step, total_steps=6, loss=0.0, term_losses={}, features=f,
                               probe_before={"fkl": probe[step]}, probe_after={"fkl": probe[step + 1]}))
            out.append(s.log_scalars())
        return out

    options = {"criterion": "fkl", "reward_horizon": 2, "update_every": 1}
    whole = feed(ArkdWeighting(**options), range(6))
    first = ArkdWeighting(**options)
    feed(first, range(3))  # stops inside the second window
    resumed = ArkdWeighting(**options)
    resumed.load_state_dict(first.state_dict())
    assert feed(resumed, range(3, 6)) == whole[3:]


@pytest.mark.parametrize("options, message", [
    ({"reward": "first_order", "granularity": "token"}, "granularity: batch"),
    ({"reward": "rouge", "reward_horizon": 2}, "reward_horizon only applies to reward"),
    ({"reward_horizon": 0}, "greater than 0"),
])
def test_first_order_and_horizon_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        ArkdWeighting(**options)

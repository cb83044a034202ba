"""pass_settings: what a strategy asks the divergence pass to compute, with a default for
strategies (third-party ones included) that do not read AKL's gaps."""
from __future__ import annotations

import pytest

from arkd_bench.weighting import (
    ArkdWeighting,
    FixedWeighting,
    GreedyWeighting,
    HypergradWeighting,
    LookaheadWeighting,
    PassSettings,
    ScheduleWeighting,
    WeightingStrategy,
)


class Plain(WeightingStrategy):
    """A third-party strategy that declares nothing about the pass."""

    name = "plain"


@pytest.mark.parametrize("strategy", [Plain(), FixedWeighting(),
                                      ScheduleWeighting(start=[1, 0], end=[0, 1]), LookaheadWeighting(),
                                      HypergradWeighting()])
def test_strategies_without_gaps_keep_the_recipes_mu(strategy):
    settings = strategy.pass_settings
    assert (settings.mu, settings.head) == (None, "paper")


@pytest.mark.parametrize("strategy", [FixedWeighting(), ScheduleWeighting(start=[1, 0], end=[0, 1]),
                                      LookaheadWeighting(), HypergradWeighting()])
def test_strategies_that_read_no_feature_ask_for_none(strategy):
    assert strategy.pass_settings == PassSettings(features=False)


def test_unknown_and_gap_strategies_get_the_features():
    assert Plain().pass_settings.features  # a third-party strategy that does not say gets them all
    assert GreedyWeighting().pass_settings.features and ArkdWeighting().pass_settings.features


def test_gap_strategies_declare_their_mu_and_head():
    assert GreedyWeighting(mu=0.3, head="official").pass_settings == PassSettings(mu=0.3, head="official")
    assert GreedyWeighting(mu=0.0, head="official").pass_settings.mu == 0.0  # 0 is a mu, not "unset"
    assert ArkdWeighting(mu=0.6).pass_settings == PassSettings(mu=0.6, head="paper")


def test_akl_names_read_the_pass_settings():
    s = GreedyWeighting(mu=0.4, head="official")
    assert (s.akl_mu, s.akl_head) == (0.4, "official")
    assert LookaheadWeighting().akl_mu is None

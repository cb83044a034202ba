"""Weighting strategies: how the terms of an objective are mixed at each step."""
from arkd_bench.weighting.arkd import ArkdWeighting
from arkd_bench.weighting.base import FEEDBACK_REQUESTS, Feedback, PassSettings, WeightingStrategy
from arkd_bench.weighting.fixed import FixedWeighting
from arkd_bench.weighting.greedy import GreedyWeighting
from arkd_bench.weighting.hypergrad import HypergradWeighting
from arkd_bench.weighting.lookahead import LookaheadWeighting
from arkd_bench.weighting.schedule import ScheduleWeighting

BUILTIN_WEIGHTINGS: dict[str, type[WeightingStrategy]] = {
    cls.name: cls for cls in (FixedWeighting, GreedyWeighting, ScheduleWeighting, ArkdWeighting, LookaheadWeighting,
                               HypergradWeighting)
}

__all__ = [
    "BUILTIN_WEIGHTINGS",
    "FEEDBACK_REQUESTS",
    "ArkdWeighting",
    "Feedback",
    "FixedWeighting",
    "GreedyWeighting",
    "HypergradWeighting",
    "LookaheadWeighting",
    "PassSettings",
    "ScheduleWeighting",
    "WeightingStrategy",
]

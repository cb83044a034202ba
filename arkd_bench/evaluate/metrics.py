"""Builtin metrics, importable without pluggy (the plugin layer registers them):
text metrics of generations, and model metrics (teacher-forced distribution
metrics, the long-tail task's answer-set metrics).

Importing this module is cheap: rouge-score and bert-score (and with them torch)
are imported on first use.
"""
from __future__ import annotations

from arkd_bench.evaluate.base import Metric, NoOptions, check_inputs
from arkd_bench.evaluate.bertscore import BertScore, BertScoreOptions
from arkd_bench.evaluate.distribution import DISTRIBUTION_METRICS
from arkd_bench.evaluate.longtail import LONGTAIL_METRICS
from arkd_bench.evaluate.rouge import RougeL

BUILTIN_METRICS: dict[str, type[Metric]] = {
    RougeL.name: RougeL,
    BertScore.name: BertScore,
    **{cls.name: cls for cls in (*DISTRIBUTION_METRICS, *LONGTAIL_METRICS)},
}

__all__ = [
    "BUILTIN_METRICS",
    "BertScore",
    "BertScoreOptions",
    "Metric",
    "NoOptions",
    "RougeL",
    "check_inputs",
]

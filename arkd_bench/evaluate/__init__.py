"""Evaluation: batched generation, the builtin metrics (Rouge-L, BERTScore, teacher-forced and
long-tail metrics, lm-eval benchmarks) and statistics over seeds and examples.

Importing this package does not import torch, transformers or the metric
packages; they are loaded when first used.
"""
from arkd_bench.evaluate.generate import GenerationSettings, generate
from arkd_bench.evaluate.metrics import BUILTIN_METRICS, BertScore, Metric, RougeL
from arkd_bench.evaluate.stats import Comparison, mean_std, paired_bootstrap, paired_permutation

__all__ = [
    "BUILTIN_METRICS",
    "BertScore",
    "Comparison",
    "GenerationSettings",
    "Metric",
    "RougeL",
    "generate",
    "mean_std",
    "paired_bootstrap",
    "paired_permutation",
]

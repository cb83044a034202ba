"""Data policies: where the training sequences come from (ground truth, teacher
generations, on-policy student samples, a replay buffer of them)."""
from arkd_bench.data_policy.base import DEFAULT_DATA_POLICY, DataPolicy, DataPolicyOptions
from arkd_bench.data_policy.builtin import (
    BUILTIN_DATA_POLICIES,
    GroundTruth,
    OnPolicy,
    Replay,
    SamplingOptions,
    TeacherGenerated,
)

__all__ = [
    "BUILTIN_DATA_POLICIES",
    "DEFAULT_DATA_POLICY",
    "DataPolicy",
    "DataPolicyOptions",
    "GroundTruth",
    "OnPolicy",
    "Replay",
    "SamplingOptions",
    "TeacherGenerated",
]

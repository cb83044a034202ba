"""Helpers of benchmarks/real_model_step.py: the machine's matmul peak (`machine`), the
divergence pass alone against its peer (`pass_alone`) and the markdown table (`table`)."""

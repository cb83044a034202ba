"""Where a run's models live: the one place that puts them on the accelerator's device.

The student a cell distils is placed by `accelerator.prepare` in the training loop; every
other model is placed here as soon as a cell takes it: the teacher (its cached outputs, online
forwards, built sequences and evaluation all run where it is) and the model a cell evaluates.
On a CPU run the device is the CPU, so placing changes nothing there."""
from __future__ import annotations

from typing import Any


class Placement:
    """Puts models on `device` (the accelerator's)."""

    def __init__(self, device) -> None:
        self.device = device

    def teacher(self, model: Any) -> Any:
        """The teacher on the device, in eval mode: it is never trained in a run."""
        return model.to(self.device).eval()

    def for_evaluation(self, model: Any) -> Any:
        """The model a cell evaluates, on the device (None: a model-free baseline). Generation
        keeps to the model's train/eval mode itself, so the mode is left as it is. A sharded
        student (train.sharding: fsdp) is on the device since it was sharded, and is left as it
        is: FSDP2's `.to` reshards it, undoing `full_parameters` around its evaluation."""
        from arkd_bench.train.sharding import is_sharded

        if model is None or is_sharded(model):
            return model
        return model.to(self.device)

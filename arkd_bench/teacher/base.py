"""The one interface the training loop asks for teacher logits, and the online teacher."""
from __future__ import annotations

import time
from typing import Any


class TeacherSource:
    """Teacher logits for training batches. This base runs the teacher model on each batch
    (the online teacher); sources that store logits per training item answer batches that
    carry an `index` from their store and run the model on any other batch (an online data
    policy's). Each source counts its own online forwards and their seconds."""

    description = "online"
    runs_online = True  # whether indexed training batches need the model on the training device

    def __init__(self, model: Any = None) -> None:
        self.model = model  # None only for sources that never run a teacher (tests' token targets)
        self.online_batches = 0
        self.seconds = 0.0  # in online forwards
        self.sent_bytes = 0  # of stored outputs handed to `.to(device)` (host to device on a GPU)

    def send(self, tensor, device):
        """`tensor` on `device`, its bytes counted in `sent_bytes`."""
        self.sent_bytes += tensor.numel() * tensor.element_size()
        return tensor.to(device)

    def logits(self, batch: dict, device=None):
        """Teacher logits [B, T, V] for a right-padded training batch, on `device`."""
        if "teacher_logits" in batch:  # computed once ahead (the probe batch)
            return batch["teacher_logits"]
        if "index" in batch and not self.runs_online:
            return self.batch(batch["index"], batch["input_ids"].shape[1], device=device)
        self.online_batches += 1
        started = time.perf_counter()
        logits = self.forward(batch)
        self.seconds += time.perf_counter() - started
        return logits

    def batch(self, indices, width: int, device=None):
        """Stored logits of the items `indices`, padded to `width` positions."""
        raise NotImplementedError(f"{type(self).__name__} stores no logits")

    def forward(self, batch: dict):
        """The teacher model's logits on `batch`, without gradient and uncounted."""
        import torch

        with torch.no_grad():
            return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def to(self, device) -> TeacherSource:
        """Put the model on `device` in eval mode (a teacher is never trained here)."""
        if self.model is not None:
            self.model.to(device).eval()
        return self


class OnlineTeacher(TeacherSource):
    """The teacher model run on every training batch."""


class StoredTeacher(TeacherSource):
    """A source that keeps logits for every training item (it implements `batch`)."""

    runs_online = False

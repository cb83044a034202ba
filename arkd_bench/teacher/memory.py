"""Full-vocabulary teacher logits of every training item, held in memory (float32, exact)."""
from __future__ import annotations

from collections.abc import Sequence

from arkd_bench.teacher.base import StoredTeacher
from arkd_bench.teacher.items import teacher_batches


def cache_bytes(items: Sequence[dict], vocab_size: int, bytes_per_value: int = 4) -> int:
    """Memory that float32 logits of `items` take (what `train.teacher_cache_mb` bounds)."""
    return sum(len(item["input_ids"]) for item in items) * vocab_size * bytes_per_value


class TeacherOutputs(StoredTeacher):
    """Full-vocabulary teacher logits per training item (float32, unpadded)."""

    description = "memory (float32 logits, exact)"

    def __init__(self, rows: list, model=None) -> None:
        super().__init__(model)
        self.rows = rows

    @classmethod
    def compute(cls, teacher, items: Sequence[dict], pad_token_id: int, batch_size: int = 32,
                device=None) -> TeacherOutputs:
        rows: list = [None] * len(items)
        for chunk, logits in teacher_batches(teacher, items, pad_token_id, batch_size, device):
            logits = logits.float().cpu()
            for row, i in enumerate(chunk):
                rows[i] = logits[row, : len(items[i]["input_ids"])].clone()
        return cls(rows, model=teacher)

    def batch(self, indices, width: int, device=None):
        """Teacher logits for a right-padded batch of `indices`, padded to `width` positions:
        each item's rows go to the device unpadded, the padding is laid out there."""
        import torch

        out = None
        for row, index in enumerate(indices.tolist()):
            logits = self.send(self.rows[index], device)
            if out is None:
                out = torch.zeros(len(indices), width, logits.shape[-1], device=logits.device)
            out[row, : logits.shape[0]] = logits
        return out

"""Teacher outputs computed once per (teacher, dataset, tokenization) and shared by every
cell of a grid, when they fit the memory budget; beyond it the teacher runs online."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


class IndexedDataset:
    """Training items that carry their position, so a batch can find its cached teacher rows."""

    def __init__(self, items: Sequence[dict], pad_token_id: int) -> None:
        self.items = list(items)
        self.pad_token_id = pad_token_id

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return {**self.items[index], "index": index}

    def collate(self, batch: Sequence[dict]):
        import torch

        from arkd_bench.data.collate import collate_for_training

        out = collate_for_training(batch, self.pad_token_id)
        out["index"] = torch.tensor([item["index"] for item in batch], dtype=torch.long)
        return out


def cache_bytes(items: Sequence[dict], vocab_size: int, bytes_per_value: int = 4) -> int:
    return sum(len(item["input_ids"]) for item in items) * vocab_size * bytes_per_value


@dataclass
class TeacherOutputs:
    """Full-vocabulary teacher logits per training item (float32, unpadded)."""

    rows: list = field(default_factory=list)

    @classmethod
    def compute(cls, teacher, items: Sequence[dict], pad_token_id: int, batch_size: int = 32,
                device=None) -> TeacherOutputs:
        import torch

        from arkd_bench.data.collate import collate_for_training

        rows: list = [None] * len(items)
        # Similar lengths together: less padding, fewer wasted FLOPs.
        order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))
        teacher.eval()
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                batch = collate_for_training([items[i] for i in chunk], pad_token_id)
                logits = teacher(input_ids=batch["input_ids"].to(device),
                                 attention_mask=batch["attention_mask"].to(device)).logits.float().cpu()
                for row, i in enumerate(chunk):
                    rows[i] = logits[row, : len(items[i]["input_ids"])].clone()
        return cls(rows)

    def batch(self, indices, width: int, device=None):
        """Teacher logits for a right-padded batch of `indices`, padded to `width` positions."""
        import torch

        vocab = self.rows[0].shape[-1]
        out = torch.zeros(len(indices), width, vocab)
        for row, index in enumerate(indices.tolist()):
            logits = self.rows[index]
            out[row, : logits.shape[0]] = logits
        return out.to(device)

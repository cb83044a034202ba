"""Training items as the teacher sees them: each carrying its position (so a batch finds
its stored rows), their content hash (the key of what is stored for them), the positions
the loss reads, and the teacher run over them in batches."""
from __future__ import annotations

from collections.abc import Sequence


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


def response_positions(item: dict) -> list[int]:
    """Positions whose teacher distribution the loss reads: those predicting a response token
    (the next label is not ignored). Every other position is masked out of every term."""
    labels = item["labels"]
    return [t for t in range(len(labels) - 1) if labels[t + 1] != -100]


def items_hash(items: Sequence[dict]) -> str:
    import hashlib
    import json

    payload = [[item["input_ids"], item["labels"]] for item in items]
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def teacher_batches(teacher, items: Sequence[dict], pad_token_id: int, batch_size: int, device=None):
    """Yield (item indices, teacher logits of their right-padded batch), in eval mode without
    gradient; items of similar length go together (less padding, fewer wasted FLOPs)."""
    import torch

    from arkd_bench.data.collate import collate_for_training

    order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))
    teacher.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = collate_for_training([items[i] for i in chunk], pad_token_id)
            yield chunk, teacher(input_ids=batch["input_ids"].to(device),
                                 attention_mask=batch["attention_mask"].to(device)).logits


def placement(positions: Sequence[Sequence[int]]):
    """(batch row, position) index tensors that put packed rows back into a padded batch:
    row r of the batch receives its `positions[r]`, in order, from consecutive packed rows."""
    import torch

    rows = [r for r, pos in enumerate(positions) for _ in pos]
    flat = [t for pos in positions for t in pos]
    return torch.tensor(rows, dtype=torch.long), torch.tensor(flat, dtype=torch.long)

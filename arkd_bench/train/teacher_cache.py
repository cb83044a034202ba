"""Teacher outputs computed once per (teacher, dataset, tokenization) and shared by every
cell of a grid: in memory (`TeacherOutputs`) when they fit `train.teacher_cache_mb`, beyond it
in memory-mapped files in the artifact cache (`StoredTeacherOutputs`: float16 log-probs, or the
top k). The teacher runs online only when a recipe asks (`teacher_outputs: online`, or `auto`
with `teacher_cache_mb: 0`)."""
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
    description = "memory (float32 logits, exact)"

    @classmethod
    def compute(cls, teacher, items: Sequence[dict], pad_token_id: int, batch_size: int = 32,
                device=None) -> TeacherOutputs:
        rows: list = [None] * len(items)
        for chunk, logits in teacher_batches(teacher, items, pad_token_id, batch_size, device):
            logits = logits.float().cpu()
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


def response_positions(item: dict) -> list[int]:
    """Positions whose teacher distribution the loss reads: those predicting a response token
    (the next label is not ignored). Every other position is masked out of every term."""
    from arkd_bench.data.collate import IGNORE_INDEX

    labels = item["labels"]
    return [t for t in range(len(labels) - 1) if labels[t + 1] != IGNORE_INDEX]


def items_hash(items: Sequence[dict]) -> str:
    import hashlib
    import json

    payload = [[item["input_ids"], item["labels"]] for item in items]
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def teacher_log_probs(teacher, items: Sequence[dict], pad_token_id: int, batch_size: int = 16, device=None):
    """Yield (item index, float32 teacher log-probs at its response positions [R, V])."""
    import torch

    for chunk, logits in teacher_batches(teacher, items, pad_token_id, batch_size, device):
        for row, i in enumerate(chunk):
            at = torch.tensor(response_positions(items[i]), dtype=torch.long, device=logits.device)
            yield i, torch.log_softmax(logits[row, at].float(), -1).cpu()


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


class StoredTeacherOutputs:
    """Teacher log-probs at the response positions of every training item, in files that are
    memory-mapped, not loaded: `dense` keeps the full vocabulary in float16 (exact but for
    half-precision rounding of log-probs, which is finest where probability is largest);
    `topk` keeps the k largest log-probs (float32, so the exact log-normaliser is in them) and
    spreads the remaining mass evenly over the other entries: an approximation, measured in
    benchmarks/RESULTS.md, used only when a recipe asks for it.

    `batch` returns dense [B, width, V] float32 log-probs; positions that predict no response
    token hold zeros (the loss masks them).
    """

    def __init__(self, folder, kind: str, vocab_size: int) -> None:
        import json

        import numpy as np

        self.folder, self.kind, self.vocab_size = folder, kind, vocab_size
        self.description = "disk (float16 log-probs, exact up to rounding)"
        index = json.loads((folder / "index.json").read_text())
        self.starts, self.positions = index["starts"], index["positions"]
        rows = index["rows"]
        if kind == "dense":
            self.logp = np.memmap(folder / "logp.f16", dtype=np.float16, mode="r", shape=(rows, vocab_size))
        else:
            self.k = index["k"]
            self.description = f"topk (k={self.k}, APPROXIMATE: the rest of the mass spread evenly)"
            self.values = np.memmap(folder / "topk_logp.f32", dtype=np.float32, mode="r", shape=(rows, self.k))
            self.indices = np.memmap(folder / "topk_ids.i32", dtype=np.int32, mode="r", shape=(rows, self.k))

    @staticmethod
    def write(folder, kind: str, teacher, items: Sequence[dict], pad_token_id: int, vocab_size: int,
              k: int = 64, device=None) -> None:
        """Run the teacher over `items` once and write its outputs into `folder`."""
        import json

        import numpy as np

        positions = [response_positions(item) for item in items]
        starts, rows = [], 0
        for pos in positions:
            starts.append(rows)
            rows += len(pos)
        shape = (max(rows, 1), vocab_size if kind == "dense" else k)
        if kind == "dense":
            logp = np.memmap(folder / "logp.f16", dtype=np.float16, mode="w+", shape=shape)
        else:
            values = np.memmap(folder / "topk_logp.f32", dtype=np.float32, mode="w+", shape=shape)
            indices = np.memmap(folder / "topk_ids.i32", dtype=np.int32, mode="w+", shape=shape)
        for i, lp in teacher_log_probs(teacher, items, pad_token_id, device=device):
            at = slice(starts[i], starts[i] + lp.shape[0])
            if kind == "dense":
                logp[at] = lp.half().numpy()
            else:
                top = lp.topk(k, dim=-1)
                values[at], indices[at] = top.values.numpy(), top.indices.int().numpy()
        for array in ([logp] if kind == "dense" else [values, indices]):
            array.flush()
        (folder / "index.json").write_text(json.dumps(
            {"kind": kind, "k": k, "rows": shape[0], "starts": starts, "positions": positions}))

    def rows(self, index: int):
        """Dense float32 log-probs [R, V] of item `index` at its response positions."""
        import numpy as np
        import torch

        at = slice(self.starts[index], self.starts[index] + len(self.positions[index]))
        if self.kind == "dense":
            return torch.from_numpy(np.asarray(self.logp[at], dtype=np.float32))
        return topk_to_dense(torch.from_numpy(np.array(self.values[at])),
                             torch.from_numpy(np.array(self.indices[at], dtype=np.int64)), self.vocab_size)

    def batch(self, indices, width: int, device=None):
        import torch

        out = torch.zeros(len(indices), width, self.vocab_size)
        for row, index in enumerate(indices.tolist()):
            positions = torch.tensor(self.positions[index], dtype=torch.long)
            if positions.numel():
                out[row, positions] = self.rows(index)
        return out.to(device)


def topk_to_dense(values, indices, vocab_size: int):
    """Full log-probs from the top-k ones: the k kept exactly, the rest of the mass
    (1 - sum of the kept probabilities) spread evenly over the other entries."""
    import torch

    k = values.shape[-1]
    tail = (1.0 - values.exp().sum(-1, keepdim=True)).clamp_min(1e-30)
    fill = tail.log() - torch.log(torch.tensor(float(max(vocab_size - k, 1))))
    out = fill.expand(*values.shape[:-1], vocab_size).clone()
    return out.scatter_(-1, indices, values)

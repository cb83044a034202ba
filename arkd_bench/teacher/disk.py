"""Teacher log-probs of every training item in memory-mapped files: `disk` (float16, exact
but for rounding) or `topk` (an approximation, used only when a recipe asks for it)."""
from __future__ import annotations

from collections.abc import Sequence

from arkd_bench.teacher.base import StoredTeacher
from arkd_bench.teacher.items import placement, response_positions, teacher_batches


def teacher_log_probs(teacher, items: Sequence[dict], pad_token_id: int, batch_size: int = 16, device=None):
    """Yield (item index, float32 teacher log-probs at its response positions [R, V])."""
    import torch

    for chunk, logits in teacher_batches(teacher, items, pad_token_id, batch_size, device):
        for row, i in enumerate(chunk):
            at = torch.tensor(response_positions(items[i]), dtype=torch.long, device=logits.device)
            yield i, torch.log_softmax(logits[row, at].float(), -1).cpu()


class StoredTeacherOutputs(StoredTeacher):
    """Teacher log-probs at the response positions of every training item, in files that are
    memory-mapped, not loaded: `dense` keeps the full vocabulary in float16 (exact but for
    half-precision rounding of log-probs, which is finest where probability is largest);
    `topk` keeps the k largest log-probs (float32, so the exact log-normaliser is in them) and
    spreads the remaining mass evenly over the other entries: an approximation, measured in
    benchmarks/RESULTS.md, used only when a recipe asks for it.

    `batch` sends the stored rows to the device as stored (float16 rows; top-k float32
    values and int32 ids) and lays them out there: dense [B, width, V] float32 log-probs whose
    positions that predict no response token hold zeros (the loss masks them), or for `topk` a
    sparse `TopKLogProbs` that the divergence pass expands chunk by chunk, or reads on its
    support (FKL).
    """

    def __init__(self, folder, kind: str, vocab_size: int, model=None) -> None:
        import json

        import numpy as np

        super().__init__(model)
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
        import numpy as np
        import torch

        chosen = indices.tolist()
        spans = [slice(self.starts[i], self.starts[i] + len(self.positions[i])) for i in chosen]
        rows, positions = (self.send(t, device) for t in placement([self.positions[i] for i in chosen]))
        if self.kind == "dense":
            packed = self.send(torch.from_numpy(np.concatenate([self.logp[at] for at in spans])), device)
            out = torch.zeros(len(chosen), width, self.vocab_size, device=packed.device)
            out[rows, positions] = packed.float()
            return out
        from arkd_bench.divergences.topk import TopKLogProbs

        values = self.send(torch.from_numpy(np.concatenate([self.values[at] for at in spans])), device)
        ids = self.send(torch.from_numpy(np.concatenate([self.indices[at] for at in spans])), device)
        shape = (len(chosen), width, self.k)
        top = TopKLogProbs(values.new_zeros(shape), ids.new_zeros(shape, dtype=torch.long),
                           torch.zeros(shape[:2], dtype=torch.bool, device=values.device), self.vocab_size)
        top.values[rows, positions], top.indices[rows, positions] = values, ids.long()
        top.present[rows, positions] = True
        return top


def topk_to_dense(values, indices, vocab_size: int):
    """Full log-probs from the top-k ones (`divergences.topk.topk_to_dense`)."""
    from arkd_bench.divergences.topk import topk_to_dense as expand

    return expand(values, indices, vocab_size)

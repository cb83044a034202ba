"""One-hot "teacher logits" of each sequence's next token, for training on the tokens of
built sequences (SFT on teacher outputs) through the same divergence pass."""
from __future__ import annotations

from collections.abc import Sequence

from arkd_bench.teacher.base import StoredTeacher

# exp(-1e4) underflows to exactly 0 in float32 and bfloat16, so the softmax of a row is an
# exact one-hot and FKL(one-hot || q) = -log q(token): the cross-entropy, bit for bit up to
# the log-softmax of the student.
OFF_TARGET_LOGIT = -1.0e4


class TokenTargets(StoredTeacher):
    """Logits for a right-padded batch of item indices, position t putting all mass on the
    item's token t + 1 (nothing is stored); the model answers batches without an index."""

    description = "TokenTargets"  # the name cells have always recorded for it

    def __init__(self, items: Sequence[dict], vocab_size: int, model=None) -> None:
        super().__init__(model)
        self.items = items
        self.vocab_size = vocab_size

    def batch(self, indices, width: int, device=None):
        import torch

        from arkd_bench.teacher.items import placement

        # only the target ids cross to the device; the one-hot rows are laid out there
        targets = [self.items[index]["input_ids"][1:width] for index in indices.tolist()]
        rows, positions = (self.send(t, device) for t in placement([range(len(ids)) for ids in targets]))
        ids = self.send(torch.tensor([t for ids in targets for t in ids], dtype=torch.long), device)
        out = torch.full((len(targets), width, self.vocab_size), OFF_TARGET_LOGIT, device=ids.device)
        out[rows, positions, ids] = 0.0
        return out

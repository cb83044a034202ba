"""What is checked of a data policy's output: the items `build_sequences` returns and the
batches an online policy's `batch` returns. Here, below both the policy interface and the
session, so each can use them; torch and the vocabulary are read only when a check runs."""
from __future__ import annotations

from typing import Any

BATCH_KEYS = ("input_ids", "labels", "attention_mask")


def batch_problem(batch: Any, given: dict, vocab_size: int) -> str | None:
    """What is wrong with a training batch an online policy returned, or None: the three
    tensors of one shape [batch, length], token ids in the vocabulary, labels ids or -100,
    attention 0 or 1, and no `index` (the teacher cache's row) beside sequences that are not
    that row's. One device synchronisation, none when the policy returned `given` itself."""
    import torch

    from arkd_bench.data.collate import IGNORE_INDEX

    if batch is given:
        return None
    if not isinstance(batch, dict):
        return f"expected a dict with {', '.join(BATCH_KEYS)}, got {type(batch).__name__}"
    missing = [k for k in BATCH_KEYS if not isinstance(batch.get(k), torch.Tensor)]
    if missing:
        return (f"{', '.join(repr(k) for k in missing)} missing or not a tensor (keys: {sorted(batch)}); "
                "session.collate(items) makes a batch")
    ids, labels, attention = (batch[k] for k in BATCH_KEYS)
    if ids.dim() != 2 or labels.shape != ids.shape or attention.shape != ids.shape:
        return ("input_ids, labels and attention_mask must share one shape [batch, length]; got "
                f"{tuple(ids.shape)}, {tuple(labels.shape)} and {tuple(attention.shape)}")
    floats = [k for k in BATCH_KEYS if batch[k].is_floating_point() or batch[k].is_complex()]
    if floats:
        return f"{', '.join(floats)} must hold integers, got {', '.join(str(batch[k].dtype) for k in floats)}"
    if ids.numel() == 0:
        return f"an empty batch of shape {tuple(ids.shape)}"
    # Rows of the teacher cache ("index") fit only the sequences they were computed for.
    kept_index = "index" in batch and "index" in given and torch.equal(batch["index"], given["index"])
    if kept_index and ids.shape != given["input_ids"].shape:
        return _KEPT_INDEX
    same = (ids == given["input_ids"].to(ids.device)).all() if kept_index else torch.ones((), dtype=torch.bool,
                                                                                           device=ids.device)
    labels, attention = labels.to(ids.device), attention.to(ids.device)
    low, high, labels_ok, attention_ok, same = torch.stack([
        ids.min(), ids.max(),
        ((labels == IGNORE_INDEX) | ((labels >= 0) & (labels < vocab_size))).all().to(ids.dtype),
        ((attention == 0) | (attention == 1)).all().to(ids.dtype),
        same.to(ids.dtype),
    ]).tolist()
    if low < 0 or high >= vocab_size:
        return f"input_ids outside the vocabulary [0, {vocab_size}): min {low}, max {high}"
    if not labels_ok:
        return f"labels must be {IGNORE_INDEX} (not scored) or token ids in [0, {vocab_size})"
    if not attention_ok:
        return "attention_mask must hold only 0 and 1"
    if not same:
        return _KEPT_INDEX
    return None


_KEPT_INDEX = ("the batch keeps the dataset batch's 'index' but holds other sequences: the teacher's cached "
               "outputs of those rows would be used for them; drop 'index' (session.collate does) so the "
               "teacher runs on the new sequences")


def items_problem(items: Any, vocab_size: int) -> str | None:
    """What is wrong with built training items, or None: a non-empty list of dicts whose
    `input_ids` and `labels` are lists of Python ints of one length, ids in the vocabulary,
    labels ids or -100, at least one scored label in all."""
    from arkd_bench.data.collate import IGNORE_INDEX

    if not isinstance(items, list) or not items:
        return f"expected a non-empty list of items, got {type(items).__name__}{'' if items else ' (empty)'}"
    scored = False
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not all(k in item for k in ("input_ids", "labels")):
            keys = sorted(item) if isinstance(item, dict) else type(item).__name__
            return f"item {i} is not a dict with 'input_ids' and 'labels' ({keys}); see generated_items"
        ids, labels = item["input_ids"], item["labels"]
        if not isinstance(ids, list) or not isinstance(labels, list) or not all(
                type(x) is int for x in ids) or not all(type(x) is int for x in labels):
            return (f"item {i}: input_ids and labels must be lists of Python ints, got "
                    f"{type(ids).__name__} and {type(labels).__name__}")
        if not ids or len(ids) != len(labels):
            return f"item {i} has {len(ids)} input_ids and {len(labels)} labels (the same non-zero number expected)"
        if min(ids) < 0 or max(ids) >= vocab_size:
            return (f"item {i} has token ids outside the vocabulary [0, {vocab_size}): "
                    f"min {min(ids)}, max {max(ids)}")
        bad = next((x for x in labels if x != IGNORE_INDEX and not 0 <= x < vocab_size), None)
        if bad is not None:
            return f"item {i} has label {bad}: labels are {IGNORE_INDEX} (not scored) or token ids in [0, {vocab_size})"
        scored = scored or any(x != IGNORE_INDEX for x in labels)
    if not scored:
        return f"no item has a scored label (every label is {IGNORE_INDEX}): there would be nothing to train on"
    return None


def check_built_sequences(policy: Any, items: Any, source: Any) -> None:
    """Raise a PluginOutputError naming the policy (a DataPolicy) when `build_sequences` returned
    bad items for `source` (the SequenceSource it was given)."""
    from arkd_bench.models.build import vocab_size

    problem = items_problem(items, vocab_size(source.teacher))
    if problem:
        from arkd_bench.plugins.output import PluginOutputError, name_of

        raise PluginOutputError("data_policy", name_of(policy), type(policy), "build_sequences", problem)

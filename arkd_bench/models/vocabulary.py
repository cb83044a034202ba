"""Teacher and student vocabularies that differ only by padding.

Embedding matrices are often padded past the tokenizer (Qwen2.5 0.5B-3B at 151936 rows, 7B and
up at 152064, both with the same tokenizer). In this harness both models always read the run's
one tokenizer, so every id >= len(tokenizer) is a padding row that no text encodes to. Two sizes
are compatible when both are >= len(tokenizer); the logits of the larger side are then cut to
the smaller one's size before anything compares the two distributions.

Slicing logits renormalises each softmax over the kept rows: any probability the larger model
puts on its padding rows is dropped and the rest rescaled. Padding rows are never targets, so
this only matters where a model puts visible mass on them (an untrained padding row can).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from arkd_bench.models.build import ModelError, vocab_size


def shared_vocabulary(teacher_size: int, student_size: int, tokenizer_size: int,
                      teacher: str = "teacher", student: str = "student") -> int:
    """The number of vocabulary entries teacher and student are compared over: the smaller size.
    Raises ModelError when either model has fewer entries than the tokenizer (some token ids
    would have no row)."""
    for role, name, size in (("teacher", teacher, teacher_size), ("student", student, student_size)):
        if size < tokenizer_size:
            raise ModelError(
                f"{role} {name!r} has a vocabulary of {size} entries, fewer than the tokenizer's {tokenizer_size} "
                f"(teacher {teacher_size}, student {student_size}); every token id needs a row, and only rows "
                "past the tokenizer are padding that may differ between teacher and student")
    return min(teacher_size, student_size)


def vocabulary_record(teacher_size: int, student_size: int, tokenizer_size: int, **names: str) -> dict | None:
    """What a cell's provenance records of its vocabularies (`vocab`), or None when the sizes
    agree (so cells that slice nothing keep the provenance they always had)."""
    used = shared_vocabulary(teacher_size, student_size, tokenizer_size, **names)
    if teacher_size == student_size:
        return None
    return {"teacher": teacher_size, "student": student_size, "used": used}


def trim_logits(student_logits, teacher_logits, tokenizer, student_size: int | None = None):
    """(student, teacher) logits over their shared vocabulary: the larger side's padding columns
    sliced off (views, no copy). `student_size` stands in for the student's last axis where that
    holds hidden states (a fused head); the head is then cut with `trim_head`. Equal sizes come
    back untouched, and `tokenizer` is only read when they differ.

    A softmax of the sliced logits is renormalised over the kept rows: mass the larger model put
    on its padding rows is dropped, not moved anywhere (see the module docstring)."""
    s_size = student_logits.shape[-1] if student_size is None else student_size
    t_size = teacher_logits.shape[-1]
    if s_size == t_size:
        return student_logits, teacher_logits
    used = shared_vocabulary(t_size, s_size, len(tokenizer))
    if student_size is None and s_size > used:
        student_logits = student_logits[..., :used]
    if t_size > used:
        if hasattr(teacher_logits, "dense"):  # a top-k teacher (divergences/topk.py): cut its full rows
            teacher_logits = teacher_logits.dense()
        teacher_logits = teacher_logits[..., :used]
    return student_logits, teacher_logits


def trim_head(lm_head: Any, size: int) -> Any:
    """A linear LM head (`divergences.LinearHead`) restricted to its first `size` output rows."""
    if lm_head is None or lm_head.vocab_size == size:
        return lm_head
    bias = None if lm_head.bias is None else lm_head.bias[:size]
    return dataclasses.replace(lm_head, weight=lm_head.weight[:size], bias=bias)


def check_vocabularies(teacher, student, tokenizer, teacher_name: str, student_name: str) -> dict | None:
    """Token-level KD compares distributions entry by entry: both models need a row for every
    token id, and may differ only by padding past the tokenizer. Returns what the cell's
    provenance records when the sizes differ (`vocabulary_record`), else None."""
    return vocabulary_record(vocab_size(teacher), vocab_size(student), len(tokenizer),
                             teacher=teacher_name, student=student_name)
